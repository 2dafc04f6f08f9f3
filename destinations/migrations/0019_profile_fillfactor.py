"""PostgreSQL: leave a fifth of each profile page free, so that ingest's constant last-seen
updates stay on their page (heap-only tuples) and touch none of the profile's ten indexes.

With full pages (the default), almost every update of a profile moved the row to another page
and inserted into every index, including the missing-billing-id index with its regular
expressions. SQLite has no such setting; nothing is done there.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

FILLFACTOR = 80


def set_fillfactor(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE destinations_profile SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE destinations_profile RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("destinations", "0018_replay")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=False)]

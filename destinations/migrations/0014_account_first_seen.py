from typing import Any

from django.db import migrations, models
from django.db.models import F, Q


def backfill(apps: Any, schema_editor: Any) -> None:
    """Existing accounts: the earlier of when the row was made and the last group call, so first
    seen is never after last seen. Exact values would take a scan of every event at upgrade;
    new group calls set it exactly, moving it earlier when an older call arrives."""
    account = apps.get_model("destinations", "Account")
    account.objects.filter(
        Q(last_seen_at__isnull=True) | Q(last_seen_at__gte=F("created_at"))
    ).update(first_seen_at=F("created_at"))
    account.objects.filter(last_seen_at__lt=F("created_at")).update(first_seen_at=F("last_seen_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("destinations", "0013_profile_needs_billing_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="first_seen_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]

# Drops the index Django made for the Event.source foreign key: event_source_message_uniq and
# event_source_id_idx both start with source_id and serve every lookup by source, so it only
# cost each inserted event one more index entry.
#
# Only the index is dropped. Letting AlterField do it would rebuild the whole events table on
# SQLite, and on PostgreSQL drop and re-add (re-validating over every row) the foreign key.

import django.db.models.deletion
from django.db import migrations, models

# Django's name for the field's index: a hash of table and column, the same on every backend.
INDEX = "destinations_event_source_id_bf6d7b7d"


class Migration(migrations.Migration):

    dependencies = [
        ('destinations', '0011_overview_and_debugger_indexes'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='event',
                    name='source',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='events', to='destinations.source'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{INDEX}"',
                    reverse_sql=f'CREATE INDEX "{INDEX}" ON "destinations_event" ("source_id")',
                ),
            ],
        ),
    ]

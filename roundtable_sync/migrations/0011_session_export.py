"""The session export table and the triggers that keep it in step.

See roundtable_sync/export_lines.py for the table and the cell rules.
"""

from django.db import migrations

from roundtable_sync import export_lines


def run(statements_by_vendor):
    def operation(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return operation


class Migration(migrations.Migration):
    dependencies = [
        ("roundtable_sync", "0010_check_index_with_group"),
        # The triggers keep the newest decision of each session too.
        ("reviews", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(
            run(
                {
                    "sqlite": export_lines.SQLITE_FORWARD,
                    "postgresql": export_lines.POSTGRES_FORWARD,
                }
            ),
            run(
                {
                    "sqlite": export_lines.SQLITE_BACKWARD,
                    "postgresql": export_lines.POSTGRES_BACKWARD,
                }
            ),
        ),
    ]

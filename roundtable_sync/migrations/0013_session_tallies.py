"""Hourly session and check counts for the overview; see roundtable_sync/tallies.py."""

from django.db import migrations, models

from roundtable_sync import tallies


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # Both tables at once, so an erasure running meanwhile waits instead
        # of deadlocking with the trigger creation on the second table.
        schema_editor.execute(
            f"LOCK TABLE {tallies.SESSION_TABLE}, {tallies.CHECK_TABLE} "
            "IN SHARE ROW EXCLUSIVE MODE"
        )
    statements = {
        "sqlite": tallies.SQLITE_FORWARD,
        "postgresql": tallies.POSTGRES_FORWARD,
    }[vendor]
    for statement in statements:
        schema_editor.execute(statement)
    tallies.count_existing(schema_editor.connection)


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = {
        "sqlite": tallies.SQLITE_BACKWARD,
        "postgresql": tallies.POSTGRES_BACKWARD,
    }[vendor]
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("roundtable_sync", "0012_watched_user_response_digest"),
    ]

    operations = [
        migrations.CreateModel(
            name="CheckTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("hour", models.DateTimeField()),
                ("compacted", models.BooleanField(default=False)),
                (
                    "group",
                    models.CharField(
                        choices=[("biometric", "Biometric"), ("device", "Device")],
                        max_length=16,
                    ),
                ),
                ("name", models.CharField(max_length=255)),
                ("status", models.CharField(max_length=255)),
                ("reports", models.IntegerField()),
            ],
            options={
                "indexes": [
                    models.Index(fields=["hour"], name="checktally_hour_idx"),
                    models.Index(
                        condition=models.Q(("compacted", False)),
                        fields=["hour"],
                        name="checktally_unfolded_idx",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="SessionTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("hour", models.DateTimeField()),
                ("compacted", models.BooleanField(default=False)),
                ("risk_score", models.SmallIntegerField(null=True)),
                ("recommended_action", models.TextField(null=True)),
                ("sessions", models.IntegerField()),
            ],
            options={
                "indexes": [
                    models.Index(fields=["hour"], name="sessiontally_hour_idx"),
                    models.Index(
                        condition=models.Q(("compacted", False)),
                        fields=["hour"],
                        name="sessiontally_unfolded_idx",
                    ),
                ],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]

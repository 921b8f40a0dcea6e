"""Day sums of the hourly tallies; see roundtable_sync/tallies.py.

NOTE: stop the workers first. Hours that a worker of the older code folds
after this migration get no day sum, and the overview would miss them.
"""

from django.db import migrations, models

from roundtable_sync import tallies


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in tallies.POSTGRES_DAY_FORWARD:
            schema_editor.execute(statement)
    tallies.count_days(schema_editor.connection)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in tallies.POSTGRES_DAY_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("roundtable_sync", "0014_user_risk"),
    ]

    operations = [
        migrations.CreateModel(
            name="CheckDayTally",
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
                ("day", models.DateTimeField()),
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
                "abstract": False,
                "indexes": [models.Index(fields=["day"], name="checkdaytally_day_idx")],
            },
        ),
        migrations.CreateModel(
            name="SessionDayTally",
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
                ("day", models.DateTimeField()),
                ("risk_score", models.SmallIntegerField(null=True)),
                ("recommended_action", models.TextField(null=True)),
                ("sessions", models.IntegerField()),
            ],
            options={
                "abstract": False,
                "indexes": [
                    models.Index(fields=["day"], name="sessiondaytally_day_idx")
                ],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]

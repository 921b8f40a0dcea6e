"""Per-user summaries for the overview; see roundtable_sync/user_risk.py.

The summaries start empty and without a state row, so the overview reads
the sessions until the worker's first refresh counts every user.
"""

from django.db import migrations, models

from roundtable_sync import user_risk


def install(apps, schema_editor):
    statements = {
        "sqlite": user_risk.SQLITE_FORWARD,
        "postgresql": user_risk.POSTGRES_FORWARD,
    }[schema_editor.connection.vendor]
    for statement in statements:
        schema_editor.execute(statement)


def uninstall(apps, schema_editor):
    statements = {
        "sqlite": user_risk.SQLITE_BACKWARD,
        "postgresql": user_risk.POSTGRES_BACKWARD,
    }[schema_editor.connection.vendor]
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("roundtable_sync", "0013_session_tallies"),
    ]

    operations = [
        migrations.CreateModel(
            name="UserRiskState",
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
                ("review", models.SmallIntegerField()),
                ("counted_at", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="UserRisk",
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
                ("user_id", models.CharField(max_length=255)),
                ("max_risk_score", models.SmallIntegerField(null=True)),
                ("sessions", models.IntegerField()),
                ("flagged", models.IntegerField()),
                ("latest_session_time", models.DateTimeField()),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user_id",), name="user_risk_unique_user"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="UserRiskChange",
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
                ("user_id", models.CharField(max_length=255)),
            ],
            options={
                "indexes": [
                    models.Index(fields=["user_id"], name="user_risk_change_user_idx")
                ],
            },
        ),
        migrations.CreateModel(
            name="UserRiskDay",
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
                ("user_id", models.CharField(max_length=255)),
                ("max_risk_score", models.SmallIntegerField(null=True)),
                ("sessions", models.IntegerField()),
                ("flagged", models.IntegerField()),
                ("latest_session_time", models.DateTimeField()),
                ("day", models.DateTimeField()),
            ],
            options={
                "indexes": [models.Index(fields=["day"], name="user_risk_day_day_idx")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user_id", "day"), name="user_risk_day_unique_user_day"
                    )
                ],
            },
        ),
        migrations.RunPython(install, uninstall),
    ]

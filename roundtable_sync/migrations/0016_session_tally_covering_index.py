"""An index that the daily series of the overview reads alone."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("roundtable_sync", "0015_day_tallies"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="sessiontally",
            name="sessiontally_hour_idx",
        ),
        migrations.AddIndex(
            model_name="sessiontally",
            index=models.Index(
                fields=["hour", "risk_score", "sessions"],
                name="sessiontally_hour_score_idx",
            ),
        ),
    ]

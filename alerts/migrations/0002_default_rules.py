"""Create one alert rule per kind, the retry dispatcher schedule, and the
first-detection state of sessions stored before alerts existed."""

from django.db import migrations
from django.utils import timezone

DEFAULT_RULES = {
    "block_band": {},
    "auto_reject": {},
    "score_rise": {"threshold": 20},
    "first_detection": {"check_names": ["agent_behavior", "bot", "vpn", "tor"]},
    "sync_failing": {"threshold": 60},
    "backfill": {},
}
SCHEDULE_NAME = "alerts: dispatch webhook retries"


def create_defaults(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    for kind, fields in DEFAULT_RULES.items():
        AlertRule.objects.get_or_create(kind=kind, defaults=fields)

    Schedule = apps.get_model("django_q", "Schedule")
    # Schedule.name is not unique, so an existing one is updated in place.
    fields = {
        "func": "alerts.tasks.dispatch_deliveries",
        "schedule_type": "I",
        "minutes": 1,
        "repeats": -1,
    }
    if not Schedule.objects.filter(name=SCHEDULE_NAME).update(**fields):
        Schedule.objects.create(name=SCHEDULE_NAME, **fields)

    # Checks already Detected in stored history are not news: without this,
    # the first poll after the upgrade would alert on them as "first".
    SessionCheck = apps.get_model("roundtable_sync", "SessionCheck")
    DetectedCheck = apps.get_model("alerts", "DetectedCheck")
    seen = (
        SessionCheck.objects.filter(status="Detected")
        .values_list("session__user_id", "name")
        .distinct()
    )
    now = timezone.now()
    DetectedCheck.objects.bulk_create(
        [
            DetectedCheck(user_id=user_id, check_name=name, first_seen_at=now)
            for user_id, name in seen.iterator()
        ],
        batch_size=500,
        ignore_conflicts=True,
    )


def delete_defaults(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_initial"),
        ("roundtable_sync", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_defaults, delete_defaults)]

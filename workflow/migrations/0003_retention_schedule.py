"""Create the daily retention schedule, idempotently by name.

django-q2's Schedule.name is not unique, so the schedule is looked up by name
and updated in place rather than created twice.
"""

from django.db import migrations

SCHEDULE_NAME = "workflow: apply retention"


def create_schedule(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    fields = {
        "func": "workflow.tasks.apply_retention",
        "schedule_type": "D",
        "repeats": -1,
    }
    existing = Schedule.objects.filter(name=SCHEDULE_NAME).order_by("pk")
    if existing.exists():
        existing.update(**fields)
        # Duplicates left by an earlier manual setup would run it twice a day.
        Schedule.objects.filter(name=SCHEDULE_NAME).exclude(
            pk=existing.first().pk
        ).delete()
    else:
        Schedule.objects.create(name=SCHEDULE_NAME, **fields)


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflow", "0002_role_groups"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]

"""Create the analysts and viewers groups with their permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLES = {"analysts": ["act", "export"], "viewers": []}


def create_groups(apps, schema_editor):
    # Permissions are normally created after all migrations; create them now
    # so the groups can be given theirs on a fresh database.
    app_config = apps.get_app_config("workflow")
    # The migration state's app config stub lacks models_module, which
    # create_permissions checks only to skip apps without models.
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.set(
            Permission.objects.filter(
                content_type__app_label="workflow", codename__in=codenames
            )
        )


def delete_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workflow", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, delete_groups)]

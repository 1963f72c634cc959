"""The contract's permissions (DESIGN.md, "Access policy").

``jobs.manage_others_jobs`` is retired: seeing everyone's jobs is Django's ``view_job`` and
acting on them ``change_job``. Every user and group that held it is given both, so they keep
what they had. ``purge_history`` and ``run_management_command`` are new.
"""

from django.db import migrations

RETIRED = "manage_others_jobs"
GRANTED_INSTEAD = {"view_job": "Can view job", "change_job": "Can change job"}
NEW = {
    "purge_history": "Can run purge-history (deletes every user's old jobs)",
    "run_management_command": "Can run management commands as jobs",
}


def forwards(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="jobs", model="job")
    perms = {
        codename: Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": name}
        )[0]
        for codename, name in {**GRANTED_INSTEAD, **NEW}.items()
    }
    retired = Permission.objects.filter(content_type=content_type, codename=RETIRED).first()
    if retired is None:
        return
    instead = [perms[codename] for codename in GRANTED_INSTEAD]
    for user in retired.user_set.all():
        user.user_permissions.add(*instead)
    for group in retired.group_set.all():
        group.permissions.add(*instead)
    retired.delete()


def backwards(apps, schema_editor):
    """The retired permission comes back for those who act on others' jobs (``change_job``)."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="jobs", model="job")
    retired, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=RETIRED, defaults={"name": "Can view and act on other users' jobs"}
    )
    change = Permission.objects.filter(content_type=content_type, codename="change_job").first()
    if change is not None:
        for user in change.user_set.all():
            user.user_permissions.add(retired)
        for group in change.group_set.all():
            group.permissions.add(retired)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0008_job_checkpoint"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="job",
            options={
                "ordering": ["-created_at"],
                "permissions": [(codename, name) for codename, name in NEW.items()],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]

from django.conf import settings
from django.db import migrations


def create_defaults(apps, schema_editor):
    Queue = apps.get_model("jobs", "Queue")
    for name, concurrency in settings.JOBADMIN_QUEUES.items():
        Queue.objects.get_or_create(name=name, defaults={"concurrency": concurrency})
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.get_or_create(
        name="purge-history",
        defaults={
            "func": "jobs.tasks.enqueue_scheduled",
            "args": "'purge-history'",
            "schedule_type": "D",
            "repeats": -1,
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="purge-history").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_defaults, remove_schedule)]

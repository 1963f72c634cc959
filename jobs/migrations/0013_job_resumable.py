from django.db import migrations, models

# The jobs still to run, pause or continue take their type's ``resumable`` now (the registry
# is complete once the apps are ready, which migrations run after); finished ones need none.
UNFINISHED = ("queued", "running", "paused")


def copy_resumable(apps, schema_editor):
    from jobs.registry import all_job_types

    Job = apps.get_model("jobs", "Job")
    not_resumable = [job_type.name for job_type in all_job_types() if not job_type.resumable]
    Job.objects.filter(status__in=UNFINISHED, type__in=not_resumable).update(resumable=False)


class Migration(migrations.Migration):
    dependencies = [("jobs", "0012_queue_owner_index")]

    operations = [
        migrations.AddField(model_name="job", name="resumable", field=models.BooleanField(default=True)),
        migrations.RunPython(copy_resumable, migrations.RunPython.noop, elidable=True),
    ]

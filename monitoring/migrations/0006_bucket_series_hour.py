import datetime

from django.db import migrations, models


def forget_series(apps, schema_editor):
    # The new column has no value in the existing rows: empty the two tables and forget the
    # watermark, so readers go raw (exact) until the monitor's next fold rebuilds every table.
    apps.get_model("monitoring", "JobFinishMinute").objects.all().delete()
    apps.get_model("monitoring", "JobStartMinute").objects.all().delete()
    apps.get_model("monitoring", "RollupState").objects.filter(name="jobs").delete()


EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0005_bucket_series_errors_histogram"),
    ]

    operations = [
        migrations.RunPython(forget_series, migrations.RunPython.noop),
        migrations.AddField(
            model_name="jobfinishminute",
            name="finished_hour",
            field=models.DateTimeField(
                default=EPOCH, help_text="The UTC hour of minute: hourly and daily trends group by it."
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="jobstartminute",
            name="started_hour",
            field=models.DateTimeField(
                default=EPOCH, help_text="The UTC hour of minute: hourly and daily trends group by it."
            ),
            preserve_default=False,
        ),
    ]

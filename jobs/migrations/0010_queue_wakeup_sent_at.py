from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0009_access_permissions"),
    ]

    operations = [
        migrations.AddField(
            model_name="queue",
            name="wakeup_sent_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]

from django.db import migrations


class Migration(migrations.Migration):
    """A wake-up now claims jobs until its queue is empty, so the queue counts the
    wake-ups in flight instead of the ones that found no free slot."""

    dependencies = [("jobs", "0003_stats_indexes")]

    operations = [
        migrations.RenameField(model_name="queue", old_name="missed_wakeups", new_name="pending_wakeups"),
    ]

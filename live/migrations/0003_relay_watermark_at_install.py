"""The relay's watermark from the moment the schema exists (issue 14, item 4).

Without a saved watermark a relay starts at the latest event, so the events written between
``migrate`` and the first monitor ever leading (a fresh deploy's first jobs) would reach open
sockets only through replay. Written here, at the latest event of the log as it stands: a
new install publishes everything, an upgraded one does not publish its history again. A row
a relay already saved is kept.
"""

from typing import Any

from django.db import migrations

STATE_NAME = "default"  # live.relay.STATE_NAME


def create_watermark(apps: Any, schema_editor: Any) -> None:
    relay_state = apps.get_model("live", "RelayState")
    if relay_state.objects.filter(name=STATE_NAME).exists():
        return
    latest = apps.get_model("jobs", "JobEvent").objects.order_by("-id").values_list("id", flat=True).first()
    relay_state.objects.create(name=STATE_NAME, cursor=latest or 0, gaps=[])


class Migration(migrations.Migration):
    dependencies = [
        ("live", "0002_event_notify_trigger"),
        ("jobs", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_watermark, migrations.RunPython.noop)]

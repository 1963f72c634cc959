"""On PostgreSQL, every commit that adds events to the log NOTIFYs the relay (live.relay).

A statement-level trigger, so that no writer of the log has to remember it and none pays a
round trip for it; PostgreSQL folds the notifications of one transaction into one and
delivers it at COMMIT, when the rows are visible. SQLite has no NOTIFY: its relay polls.
"""

from typing import Any

from django.db import migrations

CHANNEL = "jobadmin_events"  # live.relay.NOTIFY_CHANNEL


def create_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("jobs", "JobEvent")._meta.db_table)
    schema_editor.execute(
        "CREATE OR REPLACE FUNCTION jobadmin_event_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
    )
    schema_editor.execute(
        f"CREATE TRIGGER jobadmin_event_notify AFTER INSERT ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION jobadmin_event_notify()"
    )


def drop_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("jobs", "JobEvent")._meta.db_table)
    schema_editor.execute(f"DROP TRIGGER IF EXISTS jobadmin_event_notify ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS jobadmin_event_notify()")


class Migration(migrations.Migration):
    dependencies = [
        ("live", "0001_relay_state"),
        ("jobs", "0001_initial"),
    ]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]

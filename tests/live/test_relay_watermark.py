"""The relay keeps its watermark and its gaps across restarts (DESIGN.md, "The event log
and live updates"; issue 14, item 4): what was committed while no relay ran (a restart, a
deploy, a monitor failover) is published once a relay runs again."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from jobs import services
from jobs.models import JobEvent
from live.models import RelayState
from live.relay import ALL_GROUP, EventRelay
from tests.live.test_relay import LateCommit, RecordingLayer, event_groups, new_relay, progress, steps

pytestmark = pytest.mark.django_db(transaction=True)


def test_events_written_while_no_relay_ran_are_published_by_the_next_one(user: Any) -> None:
    first_layer = RecordingLayer()
    relay = new_relay(first_layer)
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    steps(relay)  # published, and the relay stops (closed)
    published = {i for _, i in first_layer.sent}
    assert published

    services.job_cancel(job=job, actor=user)  # while no relay runs
    missed = list(
        JobEvent.objects.filter(job=job).exclude(id__in=published).order_by("id").values_list("id", flat=True)
    )
    assert missed

    layer = RecordingLayer()
    steps(EventRelay(layer=layer, poll=0.001, grace=30), 3)
    assert sorted(layer.sent) == sorted((group, i) for i in missed for group in event_groups(job))


def test_a_late_commit_below_the_watermark_while_no_relay_ran_is_published_by_the_next_one(user: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("out-of-order commits need PostgreSQL's concurrent writers (CI runs this)")
    first = services.job_enqueue(job_type="demo", params={}, user=user)
    second = services.job_enqueue(job_type="demo", params={}, user=user)
    relay = new_relay(RecordingLayer())
    late = LateCommit(first)
    fast_id = progress(second, 1)
    steps(relay, 3)  # publishes the higher id, remembers the lower one as a gap, stops
    late.commit()  # the lower id commits while no relay runs

    layer = RecordingLayer()
    steps(EventRelay(layer=layer, poll=0.001, grace=30), 3)
    assert [i for group, i in layer.sent if group == ALL_GROUP] == [late.event_id]
    assert fast_id not in {i for _, i in layer.sent}


def test_events_written_before_any_relay_ran_are_published_by_the_first_one(user: Any) -> None:
    # A fresh install: migrate writes the watermark (live migration 0003), the web process
    # takes jobs before the first monitor ever leads; its relay still publishes them.
    from importlib import import_module

    from django.apps import apps

    RelayState.objects.all().delete()  # as on a database migrated from nothing (the flush removed the row)
    import_module("live.migrations.0003_relay_watermark_at_install").create_watermark(apps, None)
    job = services.job_enqueue(job_type="demo", params={}, user=user)
    written = list(JobEvent.objects.filter(job=job).order_by("id").values_list("id", flat=True))
    assert written

    layer = RecordingLayer()
    steps(EventRelay(layer=layer, poll=0.001, grace=30), 3)
    assert sorted(layer.sent) == sorted((group, i) for i in written for group in event_groups(job))


def test_the_install_watermark_starts_after_the_history_an_upgrade_already_has(user: Any) -> None:
    # Upgrading a database with a history: its old events are not published again.
    from importlib import import_module

    from django.apps import apps

    old = services.job_enqueue(job_type="demo", params={}, user=user)
    RelayState.objects.all().delete()
    migration = import_module("live.migrations.0003_relay_watermark_at_install")
    migration.create_watermark(apps, None)
    migration.create_watermark(apps, None)  # a second run keeps what a relay saved
    assert RelayState.objects.get().cursor == JobEvent.objects.filter(job=old).latest("id").id

    layer = RecordingLayer()
    steps(EventRelay(layer=layer, poll=0.001, grace=30), 3)
    assert layer.sent == []

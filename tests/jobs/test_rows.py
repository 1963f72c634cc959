"""``jobs.rows`` writes and reads exactly what the ORM would, on the run's database.

The engine's hot path uses these statements instead of ``save()``, ``update()`` and
``first()``; each test does the same thing both ways and compares every field.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Model
from django.utils import timezone

from jobs import rows
from jobs.models import Job, JobEvent, JobStatus
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _fields(obj: Model) -> dict[str, Any]:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def _job(now: Any = None, **extra: Any) -> Job:
    now = now or timezone.now()
    values: dict[str, Any] = {
        "type": "demo",
        "params": {"items": 3, "name": "ünïcode ✓", "nested": {"a": [1, 2.5, None, True]}},
        "queue": "default",
        "priority": -3,
        "user": UserFactory(),
        "steps": ["Prepare", "Process"],
        "created_at": now,
        "updated_at": now,
        "run_after": now + timedelta(seconds=5),
        "eta": now + timedelta(minutes=1, microseconds=7),
        "duration": 1.25,
        "total_items": 2**40,
        "cancel_requested": True,
        "error": 'it\'s "quoted" %s %(x)s',
        **extra,
    }
    return Job(**values)


def test_insert_writes_what_save_writes() -> None:
    by_orm = _job()
    by_orm.save(force_insert=True)
    by_rows = _job(by_orm.created_at, id=uuid.uuid4(), user=by_orm.user)

    rows.insert(by_rows)

    assert not by_rows._state.adding
    orm_row = _fields(Job.objects.get(pk=by_orm.pk))
    rows_row = _fields(Job.objects.get(pk=by_rows.pk))
    assert rows_row.pop("id") == by_rows.id
    orm_row.pop("id")
    assert rows_row == orm_row


def test_insert_returns_the_auto_increment_key() -> None:
    job = _job()
    job.save()
    first = JobEvent(kind="progress", job=job, owner_id=job.user_id, payload={"job": {"id": str(job.id)}})
    second = JobEvent(kind="log", job=None, actor_id=job.user_id, payload={"lines": ["a", "b"]})

    rows.insert(first)
    rows.insert(second)

    assert first.pk is not None
    assert second.pk == first.pk + 1
    assert _fields(JobEvent.objects.get(pk=first.pk)) == _fields(first)
    assert _fields(JobEvent.objects.get(pk=second.pk)) == _fields(second)


def _running_pair() -> tuple[Job, Job]:
    """Two stored running jobs alike in every field but the id: one changed each way."""
    job = _job(status=JobStatus.RUNNING, worker="w:1", attempts=2)
    job.save()
    twin = _job(job.created_at, status=JobStatus.RUNNING, worker="w:1", attempts=2, user=job.user)
    twin.save()
    return job, twin


def test_update_matches_queryset_update_and_its_conditions() -> None:
    job, twin = _running_pair()
    now = timezone.now()
    values = {
        "status": JobStatus.COMPLETED,
        "finished_at": now,
        "eta": None,
        "steps": ["One", "Two", "Three"],
        "progress": 100.0,
    }

    # A condition that does not hold changes nothing.
    assert rows.update(Job, values, pk=job.pk, worker="w:2", attempts=2) == 0
    assert rows.update(Job, values, pk=str(job.pk), worker="w:1", status__in=(JobStatus.QUEUED,)) == 0
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING

    assert rows.update(Job, values, pk=str(job.pk), worker="w:1", attempts=2, status__in=("running", "paused")) == 1
    assert Job.objects.filter(pk=twin.pk).update(**values) == 1

    updated, reference = _fields(Job.objects.get(pk=job.pk)), _fields(Job.objects.get(pk=twin.pk))
    assert updated.pop("id") != reference.pop("id")
    assert updated == reference
    assert updated["status"] == JobStatus.COMPLETED
    assert updated["steps"] == ["One", "Two", "Three"]


def test_select_one_reads_what_the_orm_reads() -> None:
    job = _job()
    job.save()
    _job(priority=-5, user=job.user).save()

    found = rows.select_one(Job, "WHERE queue = %s ORDER BY priority DESC LIMIT 1", ["default"])
    assert isinstance(found, Job)
    assert not found._state.adding
    assert _fields(found) == _fields(Job.objects.get(pk=job.pk))
    assert rows.select_one(Job, "WHERE queue = %s", ["nowhere"]) is None


def test_update_returning_writes_what_update_writes_and_returns_the_row_as_the_orm_reads_it() -> None:
    job, twin = _running_pair()
    now = timezone.now()
    values = {"processed_items": 7, "progress": 42.5, "eta": now + timedelta(seconds=3), "steps": ["A", "B"]}

    assert rows.update_returning(Job, values, pk=job.pk, worker="w:2", attempts=2) is None
    assert Job.objects.get(pk=job.pk).processed_items == 0

    returned = rows.update_returning(Job, values, pk=str(job.pk), worker="w:1", status__in=("running", "paused"))
    assert Job.objects.filter(pk=twin.pk).update(**values) == 1

    assert isinstance(returned, Job)
    assert not returned._state.adding
    stored, reference = _fields(Job.objects.get(pk=job.pk)), _fields(Job.objects.get(pk=twin.pk))
    assert _fields(returned) == stored
    assert stored.pop("id") != reference.pop("id")
    assert stored == reference
    assert stored["progress"] == 42.5

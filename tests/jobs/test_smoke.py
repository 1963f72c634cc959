"""A job runs in-process from enqueue to completion (the engine's happy path)."""

import pytest
from django.db import connection, connections

from jobs import services
from jobs.models import EventKind, JobEvent, JobStatus, Queue
from jobs.tasks import execute_job, run_next


@pytest.mark.django_db(transaction=True)
def test_demo_job_runs_to_completion_when_a_worker_claims_it(user):
    job = services.job_enqueue(job_type="demo", params={"items": 5, "delay_ms": 0}, user=user)
    assert job.status == JobStatus.QUEUED

    assert run_next("default") == str(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert (job.processed_items, job.total_items, job.progress) == (5, 5, 100)
    assert job.result.data == {"items": 5}
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds[0] == EventKind.CREATED
    assert kinds[1] == EventKind.STARTED
    assert kinds[-1] == EventKind.COMPLETED


@pytest.mark.django_db(transaction=True)
def test_one_wakeup_runs_every_job_of_its_queue_in_priority_order():
    low = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0}, priority=0)
    high = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0}, priority=9)
    other_queue = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0}, queue="batch")

    assert run_next("default") == str(high.pk)

    low.refresh_from_db()
    high.refresh_from_db()
    other_queue.refresh_from_db()
    assert low.status == high.status == JobStatus.COMPLETED
    assert high.started_at is not None
    assert low.started_at is not None
    assert high.started_at < low.started_at
    assert other_queue.status == JobStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_a_wakeup_hands_over_after_its_time_budget(settings):
    settings.JOBADMIN_WAKEUP_BUDGET = 0
    first = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})
    second = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})
    Queue.objects.filter(name="default").update(pending_wakeups=0)

    assert run_next("default") == str(first.pk)

    second.refresh_from_db()
    assert second.status == JobStatus.QUEUED
    assert Queue.objects.get(name="default").pending_wakeups == 1, "a fresh wake-up was sent for the rest"


def _commits(monkeypatch):
    """What each commit of the test's connection made durable: the (job, kind) of its new events.

    A spy on the real ``commit`` (which still runs): the events are read inside the
    transaction, just before it commits, so a pair of events in one entry was one transaction.
    """
    real_connection = connections["default"]
    real_commit = real_connection.commit
    commits: list[set[tuple[str, str]]] = []
    seen = {"id": JobEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0}

    def commit():
        rows = list(JobEvent.objects.filter(id__gt=seen["id"]).values_list("id", "job_id", "kind"))
        if rows:
            seen["id"] = max(row[0] for row in rows)
        commits.append({(str(job_id), kind) for _, job_id, kind in rows})
        real_commit()

    monkeypatch.setattr(real_connection, "commit", commit)
    return commits


@pytest.mark.django_db(transaction=True)
def test_a_draining_worker_finishes_a_job_and_claims_the_next_in_one_transaction(monkeypatch):
    first = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0}, priority=5)
    second = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})
    claimed = services.job_claim(queue="default", worker="w:1")
    assert claimed is not None
    assert claimed.pk == first.pk
    commits = _commits(monkeypatch)

    following = execute_job(claimed, worker="w:1", claim_next="default")

    assert following is not None
    assert following.pk == second.pk
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == JobStatus.COMPLETED
    assert (second.status, second.worker) == (JobStatus.RUNNING, "w:1")
    # One commit made both durable: the finish of the first and the start of the second.
    pair = {(str(first.pk), EventKind.COMPLETED), (str(second.pk), EventKind.STARTED)}
    assert [events for events in commits if events & pair] == [pair]


@pytest.mark.django_db(transaction=True)
def test_a_failing_next_claim_never_undoes_the_finish(monkeypatch):
    job = services.job_enqueue(job_type="demo", params={"items": 1, "delay_ms": 0})
    claimed = services.job_claim(queue="default", worker="w:1")
    assert claimed is not None

    def broken_claim(**kwargs):
        with connection.cursor() as cursor:  # a real error from the database
            cursor.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(services.claim, "job_claim", broken_claim)

    assert execute_job(claimed, worker="w:1", claim_next="default") is None
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert job.events.filter(kind=EventKind.COMPLETED).count() == 1

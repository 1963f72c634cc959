"""The table of people's actions (``jobs.models.TRANSITIONS``) tested as data.

Every action against every status and request flag: either the table allows it and the
service applies exactly the table's change, or the service refuses it with
``TransitionNotAllowed`` (the API with 409) and nothing is changed, no event written.
What the table must say is written out here on its own, from DESIGN.md ("Statuses"), so a
wrong table fails instead of agreeing with itself.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.forms.models import model_to_dict

from jobs import services
from jobs.exceptions import TransitionNotAllowed
from jobs.models import TRANSITIONS, Job, JobEvent, JobStatus, job_states
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

FLAGS = [
    {"cancel_requested": cancel, "pause_requested": pause}
    for cancel, pause in itertools.product([False, True], repeat=2)
]


def expected_outcome(action: str, status: str, flags: dict[str, bool]) -> str | None:
    """The status right after ``action`` if it is legal, else None (the contract, by hand)."""
    cancel_pending, pause_pending = flags["cancel_requested"], flags["pause_requested"]
    if action == "cancel":
        if status in ("queued", "paused"):
            return "cancelled"
        if status == "running" and not cancel_pending:
            return "running"  # cancelled at its next checkpoint
        return None
    if action == "pause":
        return "running" if status == "running" and not pause_pending and not cancel_pending else None
    if action == "resume":
        if status == "paused":
            return "queued"  # a paused job was suspended: it is queued to continue
        if status == "running" and pause_pending:
            return "running"  # the pause is withdrawn before it took effect
        return None
    if action == "retry":
        return "queued" if status in ("failed", "cancelled") else None
    raise AssertionError(action)


CASES = [
    pytest.param(
        action,
        status,
        flags,
        id=f"{action}-{status}-{'c' if flags['cancel_requested'] else ''}{'p' if flags['pause_requested'] else ''}",
    )
    for action in ["cancel", "retry", "pause", "resume"]
    for status in JobStatus.values
    for flags in FLAGS
]


def _job(status: str, flags: dict[str, bool]) -> Job:
    return JobFactory.create(status=status, attempts=1, max_attempts=1, **flags)


def _state(job: Job) -> dict[str, Any]:
    job.refresh_from_db()
    return model_to_dict(job)


def test_the_table_names_the_actions_the_services_apply():
    assert list(TRANSITIONS) == list(services.JOB_ACTIONS) == ["cancel", "retry", "pause", "resume"]
    for cells in TRANSITIONS.values():
        assert set(cells) <= set(JobStatus.values)


@pytest.mark.parametrize(("action", "status", "flags"), CASES)
def test_an_action_is_applied_as_the_table_says_or_refused_with_nothing_changed(action, status, flags, user):
    job = _job(status, flags)
    expected = expected_outcome(action, status, flags)
    assert (action in job.allowed_actions()) == (expected is not None)
    before = _state(job)
    events_before = JobEvent.objects.count()

    if expected is None:
        with pytest.raises(TransitionNotAllowed) as refused:
            services.JOB_ACTIONS[action](job=job, actor=user)
        assert refused.value.action == action
        assert refused.value.status == status
        assert str(refused.value)  # a message people can read
        assert _state(job) == before, "a refused action changes nothing"
        assert JobEvent.objects.count() == events_before, "and writes no event"
    else:
        changed = services.JOB_ACTIONS[action](job=job, actor=user)
        assert changed.status == expected == TRANSITIONS[action][status].to
        assert _state(job)["status"] == expected
        assert JobEvent.objects.count() == events_before + 1


@pytest.mark.parametrize(("action", "status", "flags"), CASES)
def test_the_api_refuses_an_illegal_action_with_409_and_changes_nothing(action, status, flags, api_client, user):
    job = _job(status, flags)
    job.user = user
    job.save(update_fields=["user"])
    api_client.force_authenticate(user)
    listed = api_client.get(f"/api/jobs/{job.pk}/").json()["actions"]
    expected = expected_outcome(action, status, flags)
    assert (action in listed) == (expected is not None)
    before = _state(job)

    response = api_client.post(f"/api/jobs/{job.pk}/{action}/")

    if expected is None:
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == "illegal_transition"
        assert (body["action"], body["status"]) == (action, status)
        assert _state(job) == before
    else:
        assert response.status_code == 200
        assert response.json()["status"] == expected
        assert response.json()["actions"] == Job.objects.get(pk=job.pk).allowed_actions()


def test_allowed_actions_follow_the_state_of_a_running_job(user):
    job = services.job_enqueue(job_type="demo", params={"items": 3, "delay_ms": 0}, user=user)
    assert job.allowed_actions() == ["cancel"]
    claimed = services.job_claim(queue="default", worker="w:1")
    assert claimed is not None
    assert claimed.allowed_actions() == ["cancel", "pause"]
    paused = services.job_pause(job=claimed, actor=user)
    assert paused.allowed_actions() == ["cancel", "resume"]
    cancelled = services.job_cancel(job=paused, actor=user)
    assert cancelled.status == JobStatus.RUNNING
    assert cancelled.allowed_actions() == ["resume"]  # the pause can still be withdrawn


def test_the_pages_get_the_table_the_services_check():
    states = job_states()
    assert states["labels"] == dict(JobStatus.choices)
    assert states["finished"] == ["completed", "failed", "cancelled"]
    assert states["live"] == ["queued", "running", "paused"]
    assert states["active"] == ["running", "paused"]
    assert states["transitions"]["resume"]["running"] == {
        "to": "running",
        "requires": "pause_requested",
        "refused_if": [],
    }
    assert states["transitions"]["pause"]["running"]["refused_if"] == [
        "not_resumable",
        "pause_requested",
        "cancel_requested",
    ]
    assert set(states["transitions"]["retry"]) == {"failed", "cancelled"}


def test_the_job_list_carries_each_jobs_actions(api_client, user):
    running = JobFactory.create(user=user, status=JobStatus.RUNNING, pause_requested=True)
    failed = JobFactory.create(user=user, status=JobStatus.FAILED)
    done = JobFactory.create(user=user, status=JobStatus.COMPLETED)
    api_client.force_authenticate(user)

    rows = {row["id"]: row["actions"] for row in api_client.get("/api/jobs/").json()["results"]}

    assert rows == {str(running.pk): ["cancel", "resume"], str(failed.pk): ["retry"], str(done.pk): []}

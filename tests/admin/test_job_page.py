"""The job page that stays live, its ``live/`` sections, its history and the live job list (test client).

The browser half (painting job-updates, the timeline growing) is tests/browser/test_job_page.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from jobs import selectors, services
from jobs.events import job_snapshot
from jobs.models import Job, JobStatus
from tests.conftest import grant
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db

WORKER = "page-test:1"


def page(client: Any, job: Job) -> Any:
    return client.get(reverse("admin:jobs_job_change", args=[job.pk]))


def live(client: Any, job: Job, after: int | str = 0) -> Any:
    return client.get(reverse("admin:jobs_job_live", args=[job.pk]), {"after": after})


def action_forms(body: str) -> dict[str, bool]:
    """The action forms on a page: name -> shown (not ``hidden``)."""
    forms = re.findall(r'<form method="post" action="[^"]*/act/(\w+)/" data-job-action="\w+" ?(hidden)?', body)
    return {name: not hidden for name, hidden in forms}


def running(owner: Any = None) -> Job:
    job = services.job_enqueue(job_type="demo", params={"items": 5, "delay_ms": 0}, user=owner)
    claimed = services.job_claim(queue=job.queue, worker=WORKER)
    assert claimed is not None
    assert claimed.pk == job.pk
    return claimed


# --- actions: the transition table's, for one the policy lets act ------------------------------


def test_a_viewer_without_change_permission_sees_no_actions_on_another_users_job(client: Any) -> None:
    job = running(owner=UserFactory())
    client.force_login(grant(UserFactory(is_staff=True), "jobs.view_job"))
    response = page(client, job)
    assert response.status_code == 200
    assert action_forms(response.content.decode()) == {}
    assert "data-job-actions" not in response.content.decode()


@pytest.mark.parametrize("who", ["owner", "changer"])
def test_one_who_may_act_gets_every_form_and_sees_those_the_state_allows(client: Any, who: str) -> None:
    owner = grant(UserFactory(is_staff=True), "jobs.view_job")
    job = running(owner=owner)
    client.force_login(owner if who == "owner" else grant(UserFactory(is_staff=True), "jobs.change_job"))
    assert action_forms(page(client, job).content.decode()) == {
        "cancel": True,
        "retry": False,
        "pause": True,
        "resume": False,
    }
    services.job_pause(job=job)
    # Running with a pause asked: it may still be cancelled, or the pause withdrawn.
    assert action_forms(page(client, job).content.decode()) == {
        "cancel": True,
        "retry": False,
        "pause": False,
        "resume": True,
    }


def test_every_job_update_carries_the_actions_its_state_allows() -> None:
    job = running()
    assert job_snapshot(job)["actions"] == ["cancel", "pause"]
    services.job_pause(job=job)
    job.refresh_from_db()
    assert job_snapshot(job)["actions"] == job.allowed_actions() == ["cancel", "resume"]
    assert job.events.order_by("-id")[0].payload["job"]["actions"] == ["cancel", "resume"]


def test_a_pause_that_only_asked_says_so_instead_of_done_now_running(client: Any, superuser: Any) -> None:
    job = running()
    client.force_login(superuser)
    response = client.post(reverse("admin:jobs_job_act", args=[job.pk, "pause"]), follow=True)
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("pause requested" in m and "then shows Paused" in m for m in said), said
    assert not any("now running" in m for m in said)
    assert "Pause requested: the job pauses at its next checkpoint." in response.content.decode()


def test_the_page_resumes_its_stream_from_the_newest_event_before_it_read_the_job(client: Any, superuser: Any) -> None:
    job = running()
    client.force_login(superuser)
    body = page(client, job).content.decode()
    assert f'data-since="{job.events.order_by("-id")[0].pk}"' in body


# --- what the page shows of the job's state -----------------------------------------------------


def test_a_paused_job_says_where_it_stopped_and_marks_its_step(client: Any, superuser: Any) -> None:
    job = JobFactory.create(
        status=JobStatus.PAUSED,
        started_at=timezone.now(),
        current_step=1,
        processed_items=42,
        total_items=100,
        checkpoint={"step": 1, "cursor": 42},
    )
    client.force_login(superuser)
    response = page(client, job)
    body = response.content.decode()
    assert "Paused at step 2 of 3 (Process), after 42 of 100 items." in body
    assert "Stopped at a checkpoint: step 2, cursor <code>42</code>" in body
    assert [s["state"] for s in response.context["job_steps"]] == ["done", "paused", "todo"]
    assert response.context["job_eta"] == "—"


def test_a_failed_job_marks_the_step_it_failed_in(client: Any, superuser: Any) -> None:
    job = JobFactory.create(status=JobStatus.FAILED, started_at=timezone.now(), current_step=1, error="boom")
    client.force_login(superuser)
    response = page(client, job)
    assert [s["state"] for s in response.context["job_steps"]] == ["done", "failed", "todo"]
    assert "(failed here)" in response.content.decode()


@pytest.mark.parametrize(
    ("age", "late", "stalled"),
    [(5, False, False), (35, True, False), (95, True, True)],
)
def test_a_running_job_with_an_old_heartbeat_is_late_before_it_is_stalled(
    client: Any, superuser: Any, settings: Any, age: int, late: bool, stalled: bool
) -> None:
    settings.JOBADMIN_STALL_THRESHOLD = 90
    settings.JOBADMIN_HEARTBEAT_INTERVAL = 2
    assert selectors.heartbeat_late_after() == 30
    now = timezone.now()
    job = JobFactory.create(
        status=JobStatus.RUNNING,
        started_at=now - timedelta(minutes=5),
        heartbeat_at=now - timedelta(seconds=age),
        eta=now + timedelta(minutes=1),
    )
    client.force_login(superuser)
    body = page(client, job).content.decode()
    assert ("data-late" in body) is late
    assert ('data-notice="late"' in body) is (late and not stalled)
    assert ('data-notice="stalled"' in body) is stalled
    assert ("— (late)" in body) is late  # no ETA counting down for a job that may be dead
    state = live(client, job).json()
    assert state["late"] is late
    assert state["check_again"] == 5  # heartbeats write no event: the page asks again while it runs


def test_the_heartbeat_rule_never_calls_a_job_late_before_three_missed_beats(settings: Any) -> None:
    settings.JOBADMIN_STALL_THRESHOLD = 6
    settings.JOBADMIN_HEARTBEAT_INTERVAL = 3
    assert selectors.heartbeat_late_after() == 9


# --- the live/ sections ------------------------------------------------------------------------


def test_live_sends_the_sections_and_only_the_rows_after_the_given_event(client: Any, superuser: Any) -> None:
    job = running()
    client.force_login(superuser)
    since = selectors.job_event_latest_id()
    services.job_log(job_id=job.pk, worker=WORKER, attempt=job.attempts, lines=[{"message": "Line one."}])
    services.job_pause(job=job, actor=superuser)

    state = live(client, job, after=since).json()
    assert set(state["sections"]) == {"facts", "notices", "steps", "result", "error"}
    assert WORKER in state["sections"]["facts"]  # the worker, which job-updates do not carry
    assert "Pause requested" in state["sections"]["notices"]
    assert "Line one." in state["log"]
    assert "pause-requested" in state["timeline"]
    assert superuser.username in state["timeline"]
    assert "started" not in state["timeline"]  # before `after`
    assert state["after"] == state["event_id"] == job.events.order_by("-id")[0].pk
    assert state["actions"] == ["cancel", "resume"]

    again = live(client, job, after=state["after"]).json()
    assert again["timeline"].strip() == again["log"].strip() == ""


def test_live_refuses_a_bad_after_and_users_without_view_permission(client: Any, superuser: Any) -> None:
    job = running(owner=UserFactory())
    client.force_login(superuser)
    bad = live(client, job, after="x")
    assert bad.status_code == 400
    assert "after" in bad.json()
    client.force_login(UserFactory(is_staff=True))
    assert live(client, job).status_code == 403
    client.logout()
    assert live(client, job).status_code == 302  # to the login


# --- history ----------------------------------------------------------------------------------


def test_history_is_the_event_log_with_who_did_what(client: Any, superuser: Any) -> None:
    alice = UserFactory(username="alice")
    job = services.job_enqueue(job_type="demo", params={"items": 5, "delay_ms": 0}, user=alice, actor=alice)
    services.job_claim(queue=job.queue, worker=WORKER)
    services.job_pause(job=job, actor=superuser)
    viewer = grant(UserFactory(is_staff=True), "jobs.view_job")
    client.force_login(viewer)
    response = client.get(reverse("admin:jobs_job_history", args=[job.pk]))
    assert response.status_code == 200
    rows = [(row["kind"], row["actor"]) for row in response.context["job_history"]]
    assert rows == [("created", "alice"), ("started", "system"), ("pause-requested", superuser.username)]
    body = response.content.decode()
    assert WORKER in body
    assert "<time datetime=" in body


def test_history_pages_a_long_log_and_needs_view_permission(client: Any, superuser: Any) -> None:
    job = running()
    for n in range(105):
        services.job_log(job_id=job.pk, worker=WORKER, attempt=job.attempts, lines=[{"message": f"line {n}"}])
    client.force_login(superuser)
    url = reverse("admin:jobs_job_history", args=[job.pk])
    first = client.get(url)
    assert len(first.context["job_history"]) == 100
    assert "Page 1 of 2 (107 events)" in first.content.decode()
    assert len(client.get(url, {"page": 2}).context["job_history"]) == 7
    assert client.get(reverse("admin:jobs_job_history", args=["not-a-uuid"])).status_code == 404
    client.force_login(UserFactory(is_staff=True))
    assert client.get(url).status_code == 403


# --- the job list -----------------------------------------------------------------------------


def test_the_list_marks_its_rows_for_the_live_stream(client: Any, superuser: Any) -> None:
    job = running()
    client.force_login(superuser)
    body = client.get(reverse("admin:jobs_job_changelist")).content.decode()
    assert f'data-job-id="{job.pk}"' in body
    assert f'data-since="{selectors.job_event_latest_id()}"' in body
    assert 'id="ja-status-labels"' in body

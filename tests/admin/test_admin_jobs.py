"""The job list, job page, bulk actions and enqueue form in the Django admin (test client)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from jobs import services
from jobs.models import EventKind, Job, JobEvent, JobResult, JobStatus, Queue
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:jobs_job_changelist"


def make_job(**fields: Any) -> Job:
    defaults: dict[str, Any] = {"user": None, "params": {"items": 5, "delay_ms": 0}, "steps": ["Prepare", "Process"]}
    return JobFactory.create(**{**defaults, **fields})


def running_job(**fields: Any) -> Job:
    now = timezone.now()
    return make_job(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, worker="w:1", attempts=1, **fields)


@pytest.fixture
def staff_client(client: Any, superuser: Any) -> Any:
    client.force_login(superuser)
    return client


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def run_action(staff_client: Any, action: str, jobs: list[Job]) -> Any:
    return staff_client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [str(j.pk) for j in jobs]}, follow=True
    )


# --- access --------------------------------------------------------------------------------


def test_job_list_requires_staff_login(client: Any, user: Any) -> None:
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
    client.force_login(user)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 302
    assert "/login/" in response["Location"]


# --- the list ------------------------------------------------------------------------------


def test_job_list_shows_badges_progress_and_columns(staff_client: Any, superuser: Any) -> None:
    job = running_job(user=superuser, progress=42)
    make_job(status=JobStatus.FAILED, type="export-jobs", queue="batch", duration=3.5)
    response = staff_client.get(reverse(CHANGELIST))
    body = response.content.decode()
    assert response.status_code == 200
    assert 'class="ja-badge ja-status-running"' in body
    assert 'class="ja-badge ja-status-failed"' in body
    assert 'aria-valuenow="42"' in body
    assert str(job.pk)[:8] in body
    assert superuser.username in body
    assert "3.5 s" in body
    assert "Enqueue a job" in body
    assert "Clean up stalled" in body


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "failed"}, {"failed"}),
        ({"type": "export-jobs"}, {"export"}),
        ({"queue": "batch"}, {"export"}),
    ],
)
def test_job_list_filters(staff_client: Any, query: dict[str, str], expected: set[str]) -> None:
    make_job(status=JobStatus.FAILED, params={"tag": "failed"})
    make_job(type="export-jobs", queue="batch", params={"tag": "export"})
    Queue.objects.get_or_create(name="batch", defaults={"concurrency": 3})
    response = staff_client.get(reverse(CHANGELIST), query)
    shown = {job.params["tag"] for job in response.context["cl"].result_list}
    assert shown == expected


def test_job_list_search_by_full_id_prefix_type_and_creator(staff_client: Any) -> None:
    alice = UserFactory(username="alice")
    a = make_job(user=alice)
    b = make_job(type="export-jobs")

    def found(term: str) -> set[Job]:
        return set(staff_client.get(reverse(CHANGELIST), {"q": term}).context["cl"].result_list)

    assert found(str(a.pk)) == {a}
    assert found(str(b.pk)[:8]) == {b}
    assert found("export") == {b}
    assert found("alice") == {a}


def test_job_list_date_hierarchy_narrows_by_day(staff_client: Any) -> None:
    old = make_job(created_at=timezone.now() - timedelta(days=40))
    new = make_job()
    day = timezone.localtime(new.created_at)
    response = staff_client.get(
        reverse(CHANGELIST), {"created_at__year": day.year, "created_at__month": day.month, "created_at__day": day.day}
    )
    shown = set(response.context["cl"].result_list)
    assert new in shown
    assert old not in shown


# --- bulk actions ----------------------------------------------------------------------------


def test_cancel_action_reports_each_job(staff_client: Any, superuser: Any) -> None:
    queued = make_job()
    done = make_job(status=JobStatus.COMPLETED)
    response = run_action(staff_client, "cancel_jobs", [queued, done])
    messages = texts(response)
    queued.refresh_from_db()
    done.refresh_from_db()
    assert queued.status == JobStatus.CANCELLED
    assert done.status == JobStatus.COMPLETED
    # One summary message, naming each job under what happened to it.
    assert messages == [
        f"Cancel: 2 jobs — 1 now cancelled ({queued.pk});"
        f" 1 refused — Cannot cancel a job that is completed ({done.pk})."
    ]
    assert JobEvent.objects.get(job=queued, kind=EventKind.CANCELLED).actor == superuser


def test_a_bulk_action_over_many_jobs_says_one_thing_naming_a_few_and_counting_the_rest(staff_client: Any) -> None:
    jobs = [make_job() for _ in range(8)]
    response = run_action(staff_client, "cancel_jobs", jobs)
    (message,) = get_messages(response.wsgi_request)
    assert message.level_tag == "success"
    assert message.message.startswith("Cancel: 8 jobs — 8 now cancelled (")
    assert message.message.endswith(" and 3 more).")
    assert sum(str(job.pk) in message.message for job in jobs) == 5
    assert set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)) == {
        JobStatus.CANCELLED
    }


def test_retry_action_requeues_failed_and_refuses_running(staff_client: Any) -> None:
    failed = make_job(status=JobStatus.FAILED, error="boom", attempts=1, finished_at=timezone.now())
    running = running_job()
    messages = texts(run_action(staff_client, "retry_jobs", [failed, running]))
    failed.refresh_from_db()
    assert failed.status == JobStatus.QUEUED
    assert failed.error == ""
    assert JobEvent.objects.get(job=failed, kind=EventKind.RETRIED).payload["previous_error"] == "boom"
    assert messages == [
        f"Retry: 2 jobs — 1 now queued ({failed.pk});"
        f" 1 refused — Only a failed or cancelled job can be retried; this one is running ({running.pk})."
    ]


def test_pause_and_resume_actions(staff_client: Any) -> None:
    job = running_job()
    run_action(staff_client, "pause_jobs", [job])
    job.refresh_from_db()
    assert job.pause_requested
    run_action(staff_client, "resume_jobs", [job])
    job.refresh_from_db()
    assert not job.pause_requested
    assert job.status == JobStatus.RUNNING
    response = run_action(staff_client, "resume_jobs", [job])
    (message,) = get_messages(response.wsgi_request)
    assert message.level_tag == "warning"
    assert message.message == f"Resume {job.pk}: refused — Only a paused job can be resumed; this one is running."


def test_cleanup_stalled_action_and_button(staff_client: Any, settings: Any) -> None:
    long_ago = timezone.now() - timedelta(seconds=settings.JOBADMIN_STALL_THRESHOLD + 60)
    stalled = running_job()
    Job.objects.filter(pk=stalled.pk).update(heartbeat_at=long_ago, started_at=long_ago)
    messages = texts(run_action(staff_client, "cleanup_stalled", [stalled]))
    stalled.refresh_from_db()
    assert stalled.status == JobStatus.FAILED
    assert messages == [
        f"Clean up stalled {stalled.pk}: now failed"
        f" (Stalled: worker {stalled.worker or '?'} stopped sending heartbeats)."
    ]
    response = staff_client.post(reverse("admin:jobs_job_cleanup_stalled"), follow=True)
    assert any("nothing to clean up" in m for m in texts(response))
    assert staff_client.get(reverse("admin:jobs_job_cleanup_stalled")).status_code == 405


def test_acting_on_others_jobs_needs_change_job(client: Any) -> None:
    from tests.conftest import grant

    viewer: Any = grant(UserFactory(is_staff=True), "jobs.view_job")
    client.force_login(viewer)
    job = make_job(user=UserFactory())
    run_action(client, "cancel_jobs", [job])
    assert client.post(reverse("admin:jobs_job_act", args=[job.pk, "cancel"])).status_code == 403
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED

    client.force_login(grant(UserFactory(is_staff=True), "jobs.change_job"))
    run_action(client, "cancel_jobs", [job])
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


# --- the job page -----------------------------------------------------------------------------


def test_job_page_shows_params_steps_result_error_and_timeline(staff_client: Any, superuser: Any) -> None:
    job = services.job_enqueue(job_type="demo", params={"items": 3, "delay_ms": 0}, user=superuser, actor=superuser)
    services.job_cancel(job=job, actor=superuser)
    Job.objects.filter(pk=job.pk).update(error="It broke", traceback="Traceback (most recent call last):\n  boom")
    result = JobResult(job=job, data={"rows": 3})
    result.file.save("out.csv", ContentFile(b"a,b\n1,2\n"), save=True)
    response = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "delay_ms" in body
    assert "Prepare" in body
    assert "Summarise" in body
    assert "It broke" in body
    assert "most recent call last" in body
    assert reverse("admin:jobs_job_download", args=[job.pk]) in body
    timeline = response.context["job_timeline"]
    assert [e["kind"] for e in timeline] == ["created", "cancelled"]
    assert all(e["actor"] == superuser.username for e in timeline)
    assert ("retry", "Retry") in response.context["job_actions"]

    download = staff_client.get(reverse("admin:jobs_job_download", args=[job.pk]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"a,b\n1,2\n"
    assert "attachment" in download["Content-Disposition"]


def test_job_page_of_a_paused_job_says_where_it_stopped(staff_client: Any) -> None:
    job = make_job(status=JobStatus.PAUSED, checkpoint={"step": 1, "cursor": 42, "suspended": True})
    body = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "Stopped at a checkpoint: step 2, cursor <code>42</code>" in body


def test_download_without_a_file_is_404(staff_client: Any) -> None:
    job = make_job(status=JobStatus.COMPLETED)
    assert staff_client.get(reverse("admin:jobs_job_download", args=[job.pk])).status_code == 404


def test_job_page_action_buttons_call_the_services(staff_client: Any) -> None:
    job = running_job()
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk]))
    assert [name for name, _ in page.context["job_actions"]] == ["cancel", "pause"]
    response = staff_client.post(reverse("admin:jobs_job_act", args=[job.pk, "pause"]))
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.pause_requested
    again = staff_client.post(reverse("admin:jobs_job_act", args=[job.pk, "pause"]), follow=True)
    assert any("refused" in m for m in texts(again))
    assert staff_client.post(reverse("admin:jobs_job_act", args=[job.pk, "explode"])).status_code == 404
    assert staff_client.get(reverse("admin:jobs_job_act", args=[job.pk, "cancel"])).status_code == 405


def test_job_page_cannot_edit_or_add(staff_client: Any) -> None:
    job = make_job()
    assert staff_client.get(reverse("admin:jobs_job_add")).status_code == 403
    staff_client.post(reverse("admin:jobs_job_change", args=[job.pk]), {"status": "completed"})
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED


# --- enqueue ------------------------------------------------------------------------------------


def test_enqueue_lists_types_and_renders_a_form_from_the_params(staff_client: Any) -> None:
    listing = staff_client.get(reverse("admin:jobs_job_enqueue"))
    assert listing.status_code == 200
    assert b"demo" in listing.content
    assert b"export-jobs" in listing.content
    page = staff_client.get(reverse("admin:jobs_job_enqueue_type", args=["demo"]))
    body = page.content.decode()
    assert page.status_code == 200
    assert 'name="items"' in body
    assert 'name="delay_ms"' in body
    assert 'name="fail_at"' in body
    assert 'min="1"' in body
    assert 'max="1000000"' in body
    assert '<label for="id_items"' in body
    assert "How many items to process." in body
    by_query = staff_client.get(reverse("admin:jobs_job_enqueue"), {"type": "demo"})
    assert by_query.context["job_type"].name == "demo"


def test_enqueue_valid_input_queues_a_job_and_records_the_actor(staff_client: Any, superuser: Any) -> None:
    response = staff_client.post(
        reverse("admin:jobs_job_enqueue_type", args=["demo"]),
        {"items": "7", "delay_ms": "0", "fail_at": "", "_queue": "default", "_priority": "3"},
    )
    job = Job.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    assert job.params == {"items": 7, "delay_ms": 0, "fail_at": None}
    assert job.priority == 3
    assert job.user == superuser
    assert JobEvent.objects.get(job=job, kind=EventKind.CREATED).actor == superuser


def test_enqueue_multiple_choice_params(staff_client: Any) -> None:
    response = staff_client.post(
        reverse("admin:jobs_job_enqueue_type", args=["export-jobs"]),
        {"status": ["failed", "cancelled"], "_queue": "batch", "_priority": "0"},
    )
    assert response.status_code == 302
    assert Job.objects.get().params["status"] == ["failed", "cancelled"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"items": "0", "delay_ms": "0"}, "items"),
        ({"items": "abc", "delay_ms": "0"}, "items"),
        ({"items": "5", "delay_ms": "-1"}, "delay_ms"),
        ({"items": "5", "delay_ms": "0", "_queue": "nowhere"}, "_queue"),
    ],
)
def test_enqueue_invalid_input_shows_field_errors_and_queues_nothing(
    staff_client: Any, data: dict[str, str], field: str
) -> None:
    payload = {"_queue": "default", "_priority": "0", **data}
    response = staff_client.post(reverse("admin:jobs_job_enqueue_type", args=["demo"]), payload)
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert b"Nothing was queued" in response.content
    assert not Job.objects.exists()


def test_enqueue_puts_service_validation_errors_on_fields(staff_client: Any) -> None:
    from jobs.admin.forms import build_enqueue_form
    from jobs.registry import get_job_type

    form = build_enqueue_form(
        get_job_type("demo"), {"items": "5", "delay_ms": "0", "_queue": "default", "_priority": 0}
    )
    assert form.is_valid()
    form.add_params_errors({"items": ["Too many."], "mystery": ["Unknown parameter."]})
    assert form.errors["items"] == ["Too many."]
    assert form.non_field_errors() == ["mystery: Unknown parameter."]


def test_enqueue_unknown_type_is_404(staff_client: Any) -> None:
    assert staff_client.get(reverse("admin:jobs_job_enqueue_type", args=["nope"])).status_code == 404


def test_enqueue_requires_staff(client: Any, user: Any) -> None:
    client.force_login(user)
    response = client.post(reverse("admin:jobs_job_enqueue_type", args=["demo"]), {"items": "5", "delay_ms": "0"})
    assert response.status_code == 302
    assert not Job.objects.exists()


# --- queues --------------------------------------------------------------------------------------


def test_queue_admin_pause_and_resume_actions(staff_client: Any) -> None:
    services.queue_ensure_defaults()
    changelist = reverse("admin:jobs_queue_changelist")
    staff_client.post(changelist, {"action": "pause_queues", "_selected_action": ["high"]}, follow=True)
    assert Queue.objects.get(name="high").paused
    response = staff_client.post(changelist, {"action": "pause_queues", "_selected_action": ["high"]}, follow=True)
    assert any("already paused" in m for m in texts(response))
    staff_client.post(changelist, {"action": "resume_queues", "_selected_action": ["high"]}, follow=True)
    assert not Queue.objects.get(name="high").paused


def test_the_same_enqueue_form_sent_twice_queues_one_job(staff_client: Any) -> None:
    # A double click, or the browser sending the POST again: the form's key makes it a replay.
    page = staff_client.get(reverse("admin:jobs_job_enqueue_type", args=["demo"]))
    key = page.context["form"]["_submission"].value()
    assert key
    assert f'value="{key}"' in page.content.decode()
    payload = {"items": "7", "delay_ms": "0", "_queue": "default", "_priority": "0", "_submission": key}
    url = reverse("admin:jobs_job_enqueue_type", args=["demo"])

    first = staff_client.post(url, payload)
    again = staff_client.post(url, payload, follow=True)

    job = Job.objects.get()
    assert first["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    assert again.redirect_chain[-1][0] == reverse("admin:jobs_job_change", args=[job.pk])
    assert "This form was already sent" in again.content.decode()
    # The same form sent back with other values is refused; a newly loaded form queues anew.
    changed = staff_client.post(url, {**payload, "items": "8"})
    assert changed.status_code == 400
    assert "already sent with other values" in changed.content.decode()
    fresh = staff_client.get(url).context["form"]["_submission"].value()
    assert fresh != key
    staff_client.post(url, {**payload, "_submission": fresh})
    assert Job.objects.count() == 2


def test_a_bulk_action_that_changes_nothing_says_so_once_with_each_reason(staff_client: Any) -> None:
    completed = [make_job(status=JobStatus.COMPLETED) for _ in range(2)]
    failed = make_job(status=JobStatus.FAILED, error="boom")
    response = run_action(staff_client, "cancel_jobs", [*completed, failed])
    (message,) = get_messages(response.wsgi_request)
    assert message.level_tag == "warning"
    head, _, parts = message.message.partition(" — ")
    assert head == "Cancel: no job was changed"
    said = {part.rstrip(".") for part in parts.split("; ")}
    listed = ", ".join(str(job.pk) for job in sorted(completed, key=lambda job: job.created_at, reverse=True))
    assert said == {
        f"1 refused — Cannot cancel a job that is failed ({failed.pk})",
        f"2 refused — Cannot cancel a job that is completed ({listed})",
    }

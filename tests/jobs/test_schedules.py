"""Schedules: cron in a time zone or an interval, pause, resume, run now, missed runs, refusals,
and the API (jobs.services.schedules, jobs.schedules, /api/schedules/). The clock is the
``now`` the services are given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.messages import get_messages
from rest_framework import serializers
from rest_framework.test import APIClient

from jobs import policy, services
from jobs.models import EventKind, Job, JobEvent, JobStatus, Schedule
from jobs.schedules import next_runs, when_problems
from tests.conftest import grant

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
DEMO = {"type": "demo", "params": {"items": 2, "delay_ms": 0}}


@pytest.fixture
def owner(user: Any) -> Any:
    return grant(user, "jobs.change_schedule")


def make(owner: Any, now: datetime = NOON, **values: Any) -> Schedule:
    return services.schedule_create(values={**DEMO, "name": "nightly", **values}, user=owner, now=now)


def runs_of(schedule: Schedule) -> list[Job]:
    return list(Job.objects.filter(schedule=schedule).order_by("created_at"))


# --- when -----------------------------------------------------------------------------------


def test_a_cron_expression_is_read_in_its_time_zone_and_stored_in_utc(owner):
    schedule = make(owner, cron="30 9 * * *", timezone="America/New_York")

    # 09:30 in New York in January (EST, UTC-5) is 14:30 UTC, later the same day.
    assert schedule.next_run_at == datetime(2026, 1, 15, 14, 30, tzinfo=UTC)
    assert services.upcoming_runs(schedule)[:3] == [
        datetime(2026, 1, 15, 14, 30, tzinfo=UTC),
        datetime(2026, 1, 16, 14, 30, tzinfo=UTC),
        datetime(2026, 1, 17, 14, 30, tzinfo=UTC),
    ]


def test_daylight_saving_changes_keep_the_local_time_and_skip_or_fold_like_cron():
    # New York springs forward on 2026-03-08 (02:00 → 03:00) and falls back on 2026-11-01.
    daily = next_runs(
        cron="30 9 * * *", timezone="America/New_York", interval_minutes=None, after=datetime(2026, 3, 6, tzinfo=UTC)
    )
    assert daily == [datetime(2026, 3, 6, 14, 30, tzinfo=UTC)]
    around = next_runs(
        cron="30 9 * * *",
        timezone="America/New_York",
        interval_minutes=None,
        after=datetime(2026, 3, 7, 15, tzinfo=UTC),
        count=2,
    )
    assert around == [datetime(2026, 3, 8, 13, 30, tzinfo=UTC), datetime(2026, 3, 9, 13, 30, tzinfo=UTC)]
    # 02:30 does not exist on the spring-forward night: it runs at 03:00 local (07:00 UTC) once.
    gap = next_runs(
        cron="30 2 * * *",
        timezone="America/New_York",
        interval_minutes=None,
        after=datetime(2026, 3, 7, 12, tzinfo=UTC),
        count=2,
    )
    assert gap == [datetime(2026, 3, 8, 7, 0, tzinfo=UTC), datetime(2026, 3, 9, 6, 30, tzinfo=UTC)]
    # 01:30 happens twice on the fall-back night: it runs once, the first time (EDT).
    fold = next_runs(
        cron="30 1 * * *",
        timezone="America/New_York",
        interval_minutes=None,
        after=datetime(2026, 10, 31, 12, tzinfo=UTC),
        count=2,
    )
    assert fold == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)]


def test_an_interval_counts_whole_minutes_from_now(owner):
    schedule = make(owner, interval_minutes=15, now=NOON + timedelta(seconds=42))

    assert schedule.next_run_at == NOON + timedelta(minutes=15)
    assert services.upcoming_runs(schedule)[1] == NOON + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("when", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "minute"),
        ({"cron": "0 0 30 2 *"}, "cron", "day"),
        ({"cron": "* * *"}, "cron", "Five fields"),
        ({"cron": "every day"}, "cron", "Five fields"),
        ({"cron": ""}, "cron", "either"),
        ({"cron": "0 3 * * *", "interval_minutes": 5}, "cron", "not both"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
        ({"interval_minutes": 0}, "interval_minutes", "Whole minutes"),
    ],
)
def test_a_wrong_timing_is_refused_with_a_message_and_nothing_is_saved(owner, when, field, words):
    values = {"cron": "", "timezone": "UTC", "interval_minutes": None, **when}
    assert words.lower() in str(when_problems(**values).get(field, "")).lower()

    with pytest.raises(serializers.ValidationError) as refused:
        make(owner, **when)
    assert field in refused.value.detail
    assert not Schedule.objects.exclude(type="purge-history").exists()


def test_a_schedule_is_checked_like_an_enqueue_of_its_job(owner):
    with pytest.raises(serializers.ValidationError, match="items"):
        make(owner, cron="0 3 * * *", params={"items": "many"})
    with pytest.raises(serializers.ValidationError, match="no-such"):
        make(owner, cron="0 3 * * *", type="no-such")
    with pytest.raises(serializers.ValidationError, match="nowhere"):
        make(owner, cron="0 3 * * *", queue="nowhere")
    with pytest.raises(policy.AccessDenied):
        make(owner, cron="0 3 * * *", type="purge-history", params={})
    assert not Schedule.objects.exclude(type="purge-history").exists()


# --- firing -----------------------------------------------------------------------------------


def test_a_due_schedule_queues_one_job_as_its_owner_and_moves_on(owner):
    schedule = make(owner, cron="0 13 * * *")

    assert services.schedules_fire(NOON + timedelta(minutes=59)) == []
    fired = services.schedules_fire(NOON + timedelta(hours=1, seconds=5))

    assert len(fired) == 1
    job = fired[0]
    assert (job.type, job.params["items"], job.user_id, job.schedule_id) == ("demo", 2, owner.pk, schedule.pk)
    schedule.refresh_from_db()
    assert schedule.next_run_at == datetime(2026, 1, 16, 13, 0, tzinfo=UTC)
    assert schedule.last_run_at == NOON + timedelta(hours=1, seconds=5)
    run = JobEvent.objects.get(kind=EventKind.SCHEDULE_RUN)
    assert run.payload["job"] == str(job.pk)
    assert services.schedules_fire(NOON + timedelta(hours=1, seconds=30)) == [], "a due time is queued once"


def test_runs_missed_while_nothing_ran_are_queued_once(owner):
    schedule = make(owner, interval_minutes=1)

    three_days_later = NOON + timedelta(days=3, seconds=20)
    assert len(services.schedules_fire(three_days_later)) == 1
    assert len(runs_of(schedule)) == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == NOON + timedelta(days=3, minutes=1)


def test_a_second_monitor_with_the_same_stale_view_queues_nothing(owner):
    schedule = make(owner, interval_minutes=5)
    stale = Schedule.objects.get(pk=schedule.pk)  # what a deposed leader read before it lost the lease
    services.schedules_fire(NOON + timedelta(minutes=6))

    # It fires from the due time it read: the conditional update finds it moved on.
    taken = Schedule.objects.filter(pk=stale.pk, enabled=True, next_run_at=stale.next_run_at).update(
        next_run_at=NOON + timedelta(minutes=11)
    )
    assert taken == 0
    assert services.schedules_fire(NOON + timedelta(minutes=6)) == []
    assert len(runs_of(schedule)) == 1


def test_paused_it_queues_nothing_and_resumed_it_skips_what_the_pause_covered(owner):
    schedule = make(owner, interval_minutes=10)
    services.schedule_pause(schedule=schedule, actor=owner)

    assert services.schedules_fire(NOON + timedelta(hours=5)) == []
    resumed = services.schedule_resume(schedule=schedule, actor=owner, now=NOON + timedelta(hours=5))

    assert resumed.next_run_at == NOON + timedelta(hours=5, minutes=10)
    assert services.schedules_fire(NOON + timedelta(hours=5, minutes=1)) == []
    assert len(services.schedules_fire(NOON + timedelta(hours=5, minutes=10))) == 1
    kinds = list(JobEvent.objects.filter(kind__startswith="schedule").values_list("kind", "actor_id"))
    assert (EventKind.SCHEDULE_PAUSED, owner.pk) in kinds
    assert (EventKind.SCHEDULE_RESUMED, owner.pk) in kinds


def test_run_now_queues_exactly_one_job_also_while_paused_and_keeps_the_next_run(owner):
    schedule = make(owner, cron="0 3 * * *")
    services.schedule_pause(schedule=schedule, actor=owner)

    job = services.schedule_run_now(schedule=schedule, actor=owner)

    assert runs_of(schedule) == [job]
    assert job.status == JobStatus.QUEUED
    schedule.refresh_from_db()
    assert (schedule.enabled, schedule.next_run_at) == (False, None)
    assert JobEvent.objects.filter(kind=EventKind.SCHEDULE_RUN, actor=owner).count() == 1


def test_a_schedule_whose_owner_may_no_longer_run_its_type_is_refused_and_paused_not_skipped(owner):
    allowed = grant(owner, "jobs.purge_history")
    schedule = make(allowed, cron="0 13 * * *", type="purge-history", params={})
    allowed.user_permissions.remove(*allowed.user_permissions.filter(codename="purge_history"))

    assert services.schedules_fire(NOON + timedelta(hours=2)) == []

    schedule.refresh_from_db()
    assert not schedule.enabled
    assert schedule.next_run_at is None
    assert "purge" in schedule.last_error
    assert JobEvent.objects.filter(kind=EventKind.SCHEDULE_REFUSED).count() == 1
    assert not runs_of(schedule)


def test_purge_history_is_a_system_schedule_from_the_migration():
    purge = Schedule.objects.get(type="purge-history")

    assert purge.user is None
    assert (purge.cron, purge.timezone, purge.enabled) == ("0 3 * * *", "UTC", True)
    assert purge.next_run_at is not None
    job = services.schedule_run_now(schedule=purge, actor=None)
    assert (job.type, job.user_id) == ("purge-history", None)


# --- the API ----------------------------------------------------------------------------------


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_creates_shows_changes_pauses_runs_and_deletes_a_schedule(owner):
    api = client_for(owner)
    created = api.post("/api/schedules/", {**DEMO, "name": "every 5", "interval_minutes": 5}, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["user"] == owner.pk
    assert len(body["next_runs"]) == 5
    url = f"/api/schedules/{body['id']}/"

    changed = api.patch(
        url, {"cron": "0 6 * * 1-5", "interval_minutes": None, "timezone": "Europe/Berlin"}, format="json"
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["cron"] == "0 6 * * 1-5"

    assert api.post(f"{url}pause/").json()["enabled"] is False
    ran = api.post(f"{url}run/")
    assert ran.status_code == 201
    assert api.get(url).json()["recent_jobs"][0]["id"] == ran.json()["id"]
    assert api.post(f"{url}resume/").json()["enabled"] is True
    assert api.delete(url).status_code == 204
    assert Job.objects.filter(pk=ran.json()["id"], schedule__isnull=True).exists(), "its jobs stay"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**DEMO, "cron": "0 25 * * *"}, "cron"),
        ({**DEMO}, "cron"),
        ({**DEMO, "cron": "0 3 * * *", "colour": "red"}, "colour"),
        ({**DEMO, "cron": "0 3 * * *", "timezone": "Nowhere/City"}, "timezone"),
        ({"type": "demo", "params": {"items": 0}, "cron": "0 3 * * *"}, "params"),
    ],
)
def test_the_api_refuses_bad_input_with_field_messages_and_saves_nothing(owner, body, field):
    response = client_for(owner).post("/api/schedules/", body, format="json")

    assert response.status_code == 400, response.content
    assert field in response.json()
    assert not Schedule.objects.exclude(type="purge-history").exists()


def test_without_the_permission_schedules_are_neither_seen_nor_changed(user, other_user):
    plain = client_for(user)
    assert plain.get("/api/schedules/").status_code == 403
    refused = plain.post("/api/schedules/", {**DEMO, "cron": "0 3 * * *"}, format="json")
    assert refused.status_code == 403
    assert "jobs.change_schedule" in refused.json()["detail"]
    viewer = client_for(grant(other_user, "jobs.view_job"))
    assert viewer.get("/api/schedules/").status_code == 200
    purge = Schedule.objects.get(type="purge-history")
    assert viewer.post(f"/api/schedules/{purge.pk}/run/").status_code == 403


# --- the admin --------------------------------------------------------------------------------


def admin_client(user: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def form(**values: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "type": "demo",
        "params": '{"items": 2}',
        "queue": "",
        "priority": "",
        "cron": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "interval_minutes": "",
        "enabled": "on",
        **values,
    }


@pytest.fixture
def operator(db: Any) -> Any:
    from tests.factories import UserFactory

    return grant(UserFactory(is_staff=True), "jobs.change_schedule", "jobs.view_job")


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"cron": "0 3 * *"}, "Five fields"),
        ({"cron": "99 3 * * *"}, "minute"),
        ({"timezone": "Moon/Base"}, "Unknown time zone"),
        ({"params": '{"items": "many"}'}, "items"),
        ({"interval_minutes": "5"}, "not both"),
    ],
)
def test_the_admin_form_refuses_a_bad_schedule_with_a_form_error_and_saves_nothing(operator, values, words):
    response = admin_client(operator).post("/admin/jobs/schedule/add/", form(**values))

    assert response.status_code == 200  # the form again, with its errors
    assert words in response.content.decode()
    assert not Schedule.objects.exclude(type="purge-history").exists()


def test_the_admin_form_saves_through_the_services_with_its_author_as_owner(operator):
    response = admin_client(operator).post("/admin/jobs/schedule/add/", form())

    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = Schedule.objects.get(name="nightly")
    assert schedule.user_id == operator.pk
    assert schedule.next_run_at is not None
    assert JobEvent.objects.filter(kind=EventKind.SCHEDULE_CHANGED, actor=operator).exists()
    page = admin_client(operator).get(f"/admin/jobs/schedule/{schedule.pk}/change/").content.decode()
    assert page.count("<li>") >= 5  # the next five runs
    assert "CET" in page or "CEST" in page  # in the schedule's zone, labelled
    assert "schedule_form.js" in page


def test_the_admin_actions_pause_resume_and_run_now(operator):
    schedule = make(operator, cron="0 3 * * *")
    client = admin_client(operator)
    changelist = "/admin/jobs/schedule/"

    def act(action):
        response = client.post(changelist, {"action": action, "_selected_action": [schedule.pk]}, follow=True)
        return [str(message) for message in get_messages(response.wsgi_request)]

    assert act("pause") == [f"Pause {schedule}: now paused."]
    schedule.refresh_from_db()
    assert not schedule.enabled
    assert act("run_now") == [f"Run now {schedule}: queued a job."]
    assert len(runs_of(schedule)) == 1
    assert act("resume") == [f"Resume {schedule}: resumed."]
    schedule.refresh_from_db()
    assert schedule.enabled

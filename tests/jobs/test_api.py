"""The jobs API's reads: list (filters, search, ordering, pagination), detail, result, events."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from jobs import services
from jobs.api.pagination import COUNT_CAP, MAX_PAGE
from jobs.models import Job, JobResult, JobStatus
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    # Throttle history is keyed by client address; tests must not inherit each other's.
    cache.delete_many(["throttle_token_127.0.0.1", "throttle_anon_127.0.0.1"])


@pytest.fixture
def client_as(api_client: Any) -> Any:
    def login(user: Any) -> Any:
        api_client.force_authenticate(user=user)
        return api_client

    return login


def ids(response: Any) -> list[str]:
    return [row["id"] for row in response.json()["results"]]


# --- list: visibility, pagination ----------------------------------------------------------


def test_list_shows_a_user_only_their_own_jobs_and_staff_all(client_as, user, other_user, staff_user):
    mine = JobFactory.create(user=user)
    theirs = JobFactory.create(user=other_user)

    assert ids(client_as(user).get("/api/jobs/")) == [str(mine.pk)]
    assert set(ids(client_as(staff_user).get("/api/jobs/"))) == {str(mine.pk), str(theirs.pk)}


def test_list_requires_authentication_with_401(api_client):
    response = api_client.get("/api/jobs/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Token")
    assert "detail" in response.json()


def test_list_pages_with_next_previous_and_an_exact_count_below_the_cap(client_as, user):
    now = timezone.now()
    jobs = [JobFactory.create(user=user, created_at=now - timedelta(minutes=i)) for i in range(5)]
    client = client_as(user)

    first = client.get("/api/jobs/?page_size=2").json()
    second = client.get(first["next"]).json()
    last = client.get("/api/jobs/?page_size=2&page=3").json()

    assert (first["count"], first["count_exact"], first["page"], first["page_size"]) == (5, True, 1, 2)
    assert first["previous"] is None
    assert [r["id"] for r in first["results"] + second["results"] + last["results"]] == [str(j.pk) for j in jobs]
    assert last["next"] is None
    assert last["previous"] is not None
    assert client.get("/api/jobs/?page=9").json()["results"] == []


def test_list_count_is_capped_and_flagged_inexact(client_as, staff_user, monkeypatch):
    monkeypatch.setattr("jobs.api.pagination.COUNT_CAP", 3)
    JobFactory.create_batch(5, user=staff_user)

    body = client_as(staff_user).get("/api/jobs/?page_size=2").json()

    assert (body["count"], body["count_exact"]) == (3, False)
    assert body["next"] is not None
    assert COUNT_CAP == 10_000


def test_a_count_over_its_time_budget_becomes_a_flagged_estimate(user):
    from django.db import connection

    from jobs.api.pagination import capped_count

    Job.objects.bulk_create([Job(type="demo", user=user) for _ in range(300)])
    queryset = Job.objects.all()
    if connection.vendor == "postgresql":
        # Each row costs 20 ms to look at: the 1 ms statement timeout must cut the count short.
        queryset = queryset.extra(where=["pg_sleep(0.02) IS NOT NULL"])  # noqa: S610
        budget = 1.0
    else:
        budget = 0.0

    count, exact = capped_count(queryset, budget_ms=budget)

    assert exact is False
    assert 0 <= count <= COUNT_CAP
    # The connection is usable afterwards, with no timeout left behind.
    assert capped_count(Job.objects.all()) == (300, True)


def test_the_page_never_reports_fewer_rows_than_it_shows_when_the_count_is_an_estimate(client_as, user, monkeypatch):
    monkeypatch.setattr("jobs.api.pagination.COUNT_BUDGET_MS", 0.0)
    monkeypatch.setattr("jobs.api.pagination._estimate", lambda queryset: 0)
    JobFactory.create_batch(5, user=user)

    body = client_as(user).get("/api/jobs/?page_size=2&page=2").json()

    assert len(body["results"]) == 2
    if body["count_exact"] is False:
        assert body["count"] >= 5  # 2 pages of 2 shown, and a next page exists
    else:
        assert body["count"] == 5


def test_list_default_page_size_is_50(client_as, user):
    JobFactory.create_batch(51, user=user)
    body = client_as(user).get("/api/jobs/").json()
    assert len(body["results"]) == 50
    assert body["count"] == 51


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "page_size=0",
        "page_size=501",
        "page_size=x",
        f"page={MAX_PAGE + 1}",
    ],
)
def test_list_rejects_a_bad_page_with_400(client_as, user, query):
    response = client_as(user).get(f"/api/jobs/?{query}")
    assert response.status_code == 400
    assert set(response.json()) <= {"page", "page_size"}


# --- list: filters --------------------------------------------------------------------------


def test_filter_by_several_statuses(client_as, user):
    failed = JobFactory.create(user=user, status=JobStatus.FAILED)
    done = JobFactory.create(user=user, status=JobStatus.COMPLETED)
    JobFactory.create(user=user, status=JobStatus.QUEUED)

    got = ids(client_as(user).get("/api/jobs/?status=failed&status=completed"))

    assert set(got) == {str(failed.pk), str(done.pk)}


def test_filter_by_type_queue_and_user(client_as, user, other_user, staff_user):
    a = JobFactory.create(user=user, type="export-jobs", queue="batch")
    b = JobFactory.create(user=other_user, type="demo", queue="default")
    client = client_as(staff_user)

    assert ids(client.get("/api/jobs/?type=export-jobs")) == [str(a.pk)]
    assert ids(client.get("/api/jobs/?queue=default")) == [str(b.pk)]
    assert ids(client.get(f"/api/jobs/?user={other_user.pk}")) == [str(b.pk)]


def test_filter_by_ids(client_as, user):
    a, b, _ = JobFactory.create_batch(3, user=user)
    assert set(ids(client_as(user).get(f"/api/jobs/?id={a.pk},{b.pk}"))) == {str(a.pk), str(b.pk)}


def test_filter_by_created_window(client_as, user):
    now = timezone.now()
    old = JobFactory.create(user=user, created_at=now - timedelta(days=3))
    mid = JobFactory.create(user=user, created_at=now - timedelta(days=2))
    JobFactory.create(user=user, created_at=now)
    after = (now - timedelta(days=2, hours=1)).isoformat()
    before = (now - timedelta(days=1)).isoformat()

    got = ids(client_as(user).get("/api/jobs/", {"created_after": after, "created_before": before}))

    assert got == [str(mid.pk)]
    assert str(old.pk) not in got


def test_search_matches_id_type_prefix_and_creator_prefix(client_as, staff_user):
    alice = UserFactory(username="alice-searcher")
    by_alice = JobFactory.create(user=alice, type="demo")
    export = JobFactory.create(user=staff_user, type="export-jobs")
    client = client_as(staff_user)

    assert ids(client.get(f"/api/jobs/?search={by_alice.pk}")) == [str(by_alice.pk)]
    assert ids(client.get("/api/jobs/?search=EXPO")) == [str(export.pk)]
    assert ids(client.get("/api/jobs/?search=alice-s")) == [str(by_alice.pk)]
    assert ids(client.get("/api/jobs/?search=nothing-matches")) == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("id=not-a-uuid", "id"),
        ("status=exploded", "status"),
        ("user=abc", "user"),
        ("user=99999999999999999999", "user"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2024-13-45", "created_before"),
        ("ordering=params", "ordering"),
        ("ordering=-nope", "ordering"),
        ("ordering=", "ordering"),
        ("user=", "user"),
        ("created_after=", "created_after"),
        ("status=", "status"),
    ],
)
def test_a_bad_filter_value_is_a_400_naming_the_field(client_as, user, query, field):
    response = client_as(user).get(f"/api/jobs/?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()


# --- list: ordering ------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["created_at", "updated_at", "started_at", "finished_at", "priority", "duration"])
def test_ordering_by_each_field_both_directions(client_as, user, field):
    base = timezone.now() - timedelta(hours=1)
    table: dict[str, list[Any]] = {
        "created_at": [base + timedelta(minutes=i) for i in range(3)],
        "updated_at": [base + timedelta(minutes=i) for i in range(3)],
        "started_at": [base + timedelta(minutes=i) for i in range(3)],
        "finished_at": [base + timedelta(minutes=i) for i in range(3)],
        "priority": [-5, 0, 7],
        "duration": [0.5, 3.0, 90.0],
    }
    values = table[field]
    jobs = [JobFactory.create(user=user, **{field: value}) for value in (values[1], values[2], values[0])]
    ascending = [str(j.pk) for j in sorted(jobs, key=lambda j: getattr(j, field))]
    client = client_as(user)

    assert ids(client.get(f"/api/jobs/?ordering={field}")) == ascending
    assert ids(client.get(f"/api/jobs/?ordering=-{field}")) == ascending[::-1]


def test_ordering_by_status(client_as, user):
    for status in (JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED):
        JobFactory.create(user=user, status=status)
    rows = client_as(user).get("/api/jobs/?ordering=status").json()["results"]
    assert [r["status"] for r in rows] == ["cancelled", "failed", "running"]


def test_ordering_by_duration_puts_unfinished_jobs_first_descending_and_last_ascending(client_as, user):
    running = JobFactory.create(user=user, status=JobStatus.RUNNING, duration=None)
    done = JobFactory.create(user=user, status=JobStatus.COMPLETED, duration=4.0)
    client = client_as(user)

    assert ids(client.get("/api/jobs/?ordering=duration")) == [str(done.pk), str(running.pk)]
    assert ids(client.get("/api/jobs/?ordering=-duration")) == [str(running.pk), str(done.pk)]


def test_default_ordering_is_newest_first(client_as, user):
    now = timezone.now()
    old = JobFactory.create(user=user, created_at=now - timedelta(hours=1))
    new = JobFactory.create(user=user, created_at=now)
    assert ids(client_as(user).get("/api/jobs/")) == [str(new.pk), str(old.pk)]


# --- detail, result, events ----------------------------------------------------------------


def test_detail_carries_timings_user_error_attempts_steps_and_eta(client_as, user):
    now = timezone.now()
    job = JobFactory.create(
        user=user,
        status=JobStatus.FAILED,
        started_at=now - timedelta(seconds=12),
        finished_at=now,
        duration=12.0,
        queue_wait=1.5,
        error="boom",
        attempts=2,
        max_attempts=3,
        eta=now,
        current_step=1,
    )

    body = client_as(user).get(f"/api/jobs/{job.pk}/").json()

    assert body["id"] == str(job.pk)
    assert (body["duration"], body["queue_wait"], body["error"]) == (12.0, 1.5, "boom")
    assert (body["user"], body["username"]) == (user.pk, user.username)
    assert (body["attempts"], body["max_attempts"]) == (2, 3)
    assert body["steps"] == ["Prepare", "Process", "Summarise"]
    assert body["step_name"] == "Process"
    assert body["eta"] is not None
    assert body["result"] is None


@pytest.mark.parametrize("path", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_detail_of_a_malformed_or_unknown_id_is_a_json_404(client_as, user, path):
    response = client_as(user).get(f"/api/jobs/{path}/")
    assert response.status_code == 404
    assert "detail" in response.json()


def test_result_as_json_and_its_file_as_a_download(client_as, user):
    job = JobFactory.create(user=user, status=JobStatus.COMPLETED)
    result = JobResult.objects.create(job=job, data={"rows": 2})
    result.file.save("export.csv", ContentFile(b"id,type\n1,demo\n"))
    client = client_as(user)

    body = client.get(f"/api/jobs/{job.pk}/result/").json()
    download = client.get(f"/api/jobs/{job.pk}/result/?download=true")

    assert body["data"] == {"rows": 2}
    assert body["file"].endswith(f"/api/jobs/{job.pk}/result/?download=1")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"id,type\n1,demo\n"
    assert "attachment" in download["Content-Disposition"]
    assert "export.csv" in download["Content-Disposition"]


def test_result_is_404_without_a_result_or_without_a_file(client_as, user):
    pending = JobFactory.create(user=user)
    no_file = JobFactory.create(user=user, status=JobStatus.COMPLETED)
    JobResult.objects.create(job=no_file, data={"ok": True})
    client = client_as(user)

    assert client.get(f"/api/jobs/{pending.pk}/result/").status_code == 404
    assert client.get(f"/api/jobs/{no_file.pk}/result/?download=1").status_code == 404
    assert client.get(f"/api/jobs/{no_file.pk}/result/?download=maybe").status_code == 400


def test_events_read_on_with_after_and_limit(client_as, user):
    client = client_as(user)
    job_id = client.post("/api/jobs/", {"type": "demo", "params": {"items": 3}}, format="json").json()["id"]
    client.post(f"/api/jobs/{job_id}/cancel/")

    first = client.get(f"/api/jobs/{job_id}/events/?limit=1").json()
    rest = client.get(f"/api/jobs/{job_id}/events/?after={first['last_event_id']}").json()

    assert [e["kind"] for e in first["results"]] == ["created"]
    assert first["has_more"] is True
    assert [e["kind"] for e in rest["results"]] == ["cancelled"]
    assert rest["has_more"] is False
    row = rest["results"][0]
    assert row["event_id"] > first["last_event_id"]
    assert row["actor"] == {"id": user.pk, "name": user.username}
    assert set(row) >= {"event_id", "kind", "actor", "payload", "created_at"}


@pytest.mark.parametrize("query", ["after=x", "after=-1", "limit=0", "limit=501"])
def test_events_reject_bad_after_or_limit(client_as, user, query):
    job = JobFactory.create(user=user)
    assert client_as(user).get(f"/api/jobs/{job.pk}/events/?{query}").status_code == 400


# --- enqueue --------------------------------------------------------------------------------


def test_enqueue_validates_params_and_creates_a_queued_job_owned_by_the_caller(client_as, user):
    response = client_as(user).post(
        "/api/jobs/", {"type": "demo", "params": {"items": 2, "delay_ms": 0}, "priority": -5}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    job = Job.objects.get(pk=body["id"])
    assert (job.status, job.user, job.priority, job.queue) == (JobStatus.QUEUED, user, -5, "default")
    assert body["params"]["items"] == 2


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"type": "nope"}, ["type"]),
        ({"type": "demo", "params": {"items": 0}}, ["params", "items"]),
        ({"type": "demo", "params": {"bogus": 1}}, ["params", "bogus"]),
        ({"type": "demo", "params": [1, 2]}, ["params", "non_field_errors"]),
        ({"type": "demo", "params": "x"}, ["params", "non_field_errors"]),
        ({"type": "demo", "queue": "nowhere"}, ["queue"]),
        ({"type": "demo", "priority": 1000}, ["priority"]),
        ({}, ["type"]),
    ],
)
def test_enqueue_errors_point_at_the_field(client_as, user, payload, path):
    response = client_as(user).post("/api/jobs/", payload, format="json")
    assert response.status_code == 400, response.content
    node = response.json()
    for key in path:
        node = node[key]
    assert node
    assert not Job.objects.exists()


def test_enqueue_into_a_named_queue(client_as, user):
    body = client_as(user).post("/api/jobs/", {"type": "demo", "queue": "high"}, format="json").json()
    assert body["queue"] == "high"


def test_enqueue_is_throttled_by_its_own_stricter_scope(client_as, user, monkeypatch):
    from jobs.api.views import EnqueueRateThrottle

    monkeypatch.setattr(EnqueueRateThrottle, "rate", "2/min", raising=False)
    client = client_as(user)
    codes = [client.post("/api/jobs/", {"type": "demo"}, format="json").status_code for _ in range(3)]
    listing = client.get("/api/jobs/")

    assert codes == [201, 201, 429]
    assert listing.status_code == 200
    cache.delete(f"throttle_enqueue_{user.pk}")


@pytest.mark.parametrize("param", ["search", "type", "queue"])
def test_a_text_filter_with_a_nul_character_matches_nothing_instead_of_failing(client_as, user, param):
    JobFactory.create(user=user)
    response = client_as(user).get(f"/api/jobs/?{param}=de%00mo")
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_dates_at_the_edge_of_the_calendar_filter_instead_of_failing(client_as, user):
    JobFactory.create(user=user)
    client = client_as(user)
    assert client.get("/api/jobs/?created_after=9999-12-31T23:59:59-10:00").json()["results"] == []
    assert len(client.get("/api/jobs/?created_before=9999-12-31T23:59:59-10:00").json()["results"]) == 1
    assert len(client.get("/api/jobs/?created_after=0001-01-01T00:00:00%2B10:00").json()["results"]) == 1


def test_status_filter_adds_no_distinct_which_would_sort_the_whole_table():
    from jobs.filters import filter_jobs

    sql = str(filter_jobs(Job.objects.all(), {"status": ["failed", "queued"]}).query)
    assert "DISTINCT" not in sql.upper()
    assert "ORDER BY" in sql.upper()


def test_job_created_through_the_service_is_visible_in_the_list(client_as, user):
    job = services.job_enqueue(job_type="demo", params={"items": 1}, user=user)
    assert ids(client_as(user).get("/api/jobs/")) == [str(job.pk)]


# --- scale: deep pages, the list's read path, the indexes --------------------------------------


def _tied_jobs(user: Any) -> list[Job]:
    """Jobs with many ties in every ordering key (same created_at, duration, status, priority)."""
    base = timezone.now() - timedelta(hours=1)
    jobs = []
    for i in range(23):
        finished = i % 3 != 0
        jobs.append(
            Job(
                type="demo",
                user=user,
                status=JobStatus.COMPLETED if finished else JobStatus.RUNNING,
                created_at=base + timedelta(minutes=i // 4),
                updated_at=base + timedelta(minutes=i // 5),
                started_at=base + timedelta(minutes=i // 6),
                finished_at=base + timedelta(minutes=i // 4 + 1) if finished else None,
                duration=float(i % 4) if finished else None,
                priority=i % 2,
            )
        )
    return Job.objects.bulk_create(jobs)


@pytest.mark.parametrize(
    "key", ["-created_at", "created_at", "-duration", "duration", "status", "-priority", "finished_at"]
)
def test_a_deferred_join_page_is_the_plain_offset_page(user, key):
    from jobs.api.pagination import page_rows
    from jobs.filters import ordering_terms

    _tied_jobs(user)
    _tied_jobs(None)
    queryset = Job.objects.filter(user=user).order_by(*ordering_terms(key))
    everything = [job.pk for job in queryset]
    assert len(everything) == len(set(everything)) == 23

    for offset in (0, 1, 4, 9, 20, 22, 23, 30):
        for limit in (1, 4, 7):
            assert [job.pk for job in page_rows(queryset, offset, limit)] == everything[offset : offset + limit]
            assert [job.pk for job in page_rows(queryset, offset, limit)] == [
                job.pk for job in queryset[offset : offset + limit]
            ]


@pytest.mark.parametrize("key", ["-created_at", "duration", "-duration", "status", "-finished_at"])
def test_walking_every_page_lists_each_job_once_in_order(client_as, user, key):
    from jobs.filters import ordering_terms

    _tied_jobs(user)
    client = client_as(user)
    expected = [str(pk) for pk in Job.objects.order_by(*ordering_terms(key)).values_list("pk", flat=True)]

    seen: list[str] = []
    url: str | None = f"/api/jobs/?ordering={key}&page_size=4"
    while url:
        body = client.get(url).json()
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
    assert seen == expected


def test_a_deep_page_reads_only_ids_past_the_offset(user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.api.pagination import page_rows
    from jobs.filters import ordering_terms

    _tied_jobs(user)
    queryset = Job.objects.order_by(*ordering_terms("-created_at"))
    with CaptureQueriesContext(connection) as queries:
        rows = page_rows(queryset, 10, 5)

    assert len(rows) == 5
    offset_query, rows_query = (q["sql"] for q in queries.captured_queries)
    assert "OFFSET" in offset_query.upper()
    select_list = offset_query.upper().split(" FROM ")[0]
    assert "PARAMS" not in select_list  # the ids alone
    assert "TYPE" not in select_list
    assert "OFFSET" not in rows_query.upper()
    assert " IN (" in rows_query.upper()


def _jobs_of_every_shape(user: Any, other: Any) -> list[Job]:
    now = timezone.now()
    return [
        JobFactory.create(user=user),
        JobFactory.create(user=None, params={}, steps=[]),
        JobFactory.create(
            user=other,
            status=JobStatus.FAILED,
            started_at=now - timedelta(seconds=90, microseconds=1234),
            finished_at=now,
            duration=90.0,
            queue_wait=0.25,
            progress=33.3,
            current_step=1,
            total_items=10,
            processed_items=3,
            error_count=1,
            eta=now + timedelta(minutes=5),
            attempts=2,
            max_attempts=3,
            error="RuntimeError: boom",
            traceback="Traceback ...",
            heartbeat_at=now,
            worker="host:1",
            run_after=now,
            cancel_requested=True,
            params={"items": 10, "nested": {"a": [1, None, "x"]}},
        ),
        JobFactory.create(user=user, status=JobStatus.RUNNING, progress=0, current_step=7),
    ]


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/St_Johns"])
def test_the_fast_job_representation_equals_drf_field_by_field(user, other_user, zone):
    from rest_framework import serializers as drf

    from jobs.api.serializers import JobDetailSerializer, JobSerializer

    _jobs_of_every_shape(user, other_user)
    with timezone.override(zone):
        for serializer_class in (JobSerializer, JobDetailSerializer):
            for job in Job.objects.select_related("user").order_by("created_at"):
                fast = serializer_class(job).data
                drf_own = drf.ModelSerializer.to_representation(serializer_class(job), job)
                assert dict(fast) == dict(drf_own)
                assert list(fast) == list(drf_own)  # same keys in the same order


def test_the_list_endpoint_returns_what_drf_would(client_as, staff_user, user, other_user):
    from rest_framework import serializers as drf

    from jobs.api.serializers import JobSerializer

    _jobs_of_every_shape(user, other_user)
    rows = client_as(staff_user).get("/api/jobs/?ordering=created_at").json()["results"]
    expected = [
        drf.ModelSerializer.to_representation(JobSerializer(job), job)
        for job in Job.objects.select_related("user").order_by("created_at", "-id")
    ]
    assert rows == [json.loads(json.dumps(row, cls=DjangoJSONEncoder)) for row in expected]
    assert rows[1]["user"] is None
    assert rows[1]["username"] is None


def test_status_and_duration_have_an_index_the_list_uses(user):
    from django.db import connection

    from jobs.filters import filter_jobs

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, Job._meta.db_table)
    assert constraints["job_status_duration"]["columns"] == ["status", "duration", "created_at"]
    assert constraints["job_status_duration"]["index"] is True

    if connection.vendor == "sqlite":
        # Without statistics (a fresh embedded install) SQLite must still pick the right
        # index for each: the status list by created_at, the status list by duration.
        def plan(params: dict[str, Any]) -> str:
            sql, args = filter_jobs(Job.objects.all(), params)[:51].query.sql_with_params()
            with connection.cursor() as cursor:
                cursor.execute(f"EXPLAIN QUERY PLAN {sql}", args)
                return " ".join(str(row[-1]) for row in cursor.fetchall())

        assert "job_status_duration" in plan({"status": "failed", "ordering": "-duration"})
        assert "job_status_duration" in plan({"status": "failed", "ordering": "duration"})
        assert "job_status_created" in plan({"status": "failed"})


def test_the_index_migration_gives_sqlite_statistics_where_there_are_some(user):
    import importlib
    from types import SimpleNamespace

    from django.db import connection

    migration = importlib.import_module("jobs.migrations.0006_status_duration_index")
    editor = SimpleNamespace(connection=connection)
    if connection.vendor != "sqlite":
        migration.analyze_new_index(None, editor)  # nothing to do there, and no error
        return
    JobFactory.create_batch(3, user=user)  # ANALYZE keeps no row for an empty table
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # in the test's transaction: rolled back afterwards
        cursor.execute("DELETE FROM sqlite_stat1 WHERE idx = 'job_status_duration'")
    migration.analyze_new_index(None, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_stat1 WHERE idx = 'job_status_duration'")
        assert cursor.fetchone()[0] == 1


def test_the_capped_count_selects_no_column_so_an_index_answers_it(user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from jobs.api.pagination import capped_count
    from jobs.filters import filter_jobs

    JobFactory.create_batch(4, user=user, status=JobStatus.FAILED)
    JobFactory.create(user=user)
    queryset = filter_jobs(Job.objects.select_related("user"), {"status": "failed"})
    with CaptureQueriesContext(connection) as queries:
        assert capped_count(queryset) == (4, True)
    (count_sql,) = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    inner = count_sql.split("FROM (", 1)[1]
    assert inner.upper().startswith("SELECT 1 ")
    assert "auth_user" not in count_sql
    assert capped_count(queryset, cap=3) == (3, False)


def test_the_list_reads_owners_usernames_in_one_query_whatever_the_page_size(client_as, staff_user, user, other_user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_as(staff_user)
    client.get("/api/jobs/?page_size=1")  # the user's permissions are read once, then cached on it
    JobFactory.create_batch(3, user=user)
    JobFactory.create(user=other_user)
    with CaptureQueriesContext(connection) as few:
        small = client.get("/api/jobs/?page_size=2&page=2").json()["results"]
    JobFactory.create_batch(20, user=other_user)
    JobFactory.create(user=None)
    with CaptureQueriesContext(connection) as many:
        rows = client.get("/api/jobs/?page_size=20&page=2").json()["results"]

    assert len(small) == 2
    assert len(rows) == 5
    assert len(many.captured_queries) == len(few.captured_queries)
    by_id = {str(job.pk): job for job in Job.objects.select_related("user")}
    for row in rows + small:
        job = by_id[row["id"]]
        assert row["username"] == (job.user.username if job.user else None)
        assert row["user"] == job.user_id


@pytest.mark.parametrize("search", ["%00", "a%00b"])
def test_a_deep_page_of_a_list_that_matches_nothing_is_empty_not_a_500(client_as, user, search):
    # A NUL in a text filter makes the queryset .none(): no SQL can be built for its count.
    JobFactory.create_batch(3, user=user)
    response = client_as(user).get(f"/api/jobs/?search={search}&page=59141&page_size=290")
    assert response.status_code == 200
    body = response.json()
    assert (body["results"], body["count"], body["count_exact"], body["next"]) == ([], 0, True, None)
    assert client_as(user).get("/api/jobs/?type=%00&page=2").json()["results"] == []


def test_the_capped_count_of_an_empty_queryset_is_an_exact_zero():
    from jobs.api.pagination import capped_count

    assert capped_count(Job.objects.none()) == (0, True)
    assert capped_count(Job.objects.filter(pk__in=[])) == (0, True)

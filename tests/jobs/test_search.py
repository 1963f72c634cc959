"""The job list's ``search`` (a substring of id, type, creator, parameter values, error) and
``params.<key>=<value>`` filters, through the API; on PostgreSQL, the indexes that serve them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.db import connection

from jobs.filters import filter_jobs
from jobs.models import Job
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.delete_many(["throttle_token_127.0.0.1", "throttle_anon_127.0.0.1"])


@pytest.fixture
def staff_api(api_client: Any, staff_user: Any) -> Any:
    api_client.force_authenticate(user=staff_user)
    return api_client


@pytest.fixture
def jobs(staff_user: Any) -> dict[str, Job]:
    carol = UserFactory(username="carol-the-searcher")
    return {
        "report": JobFactory.create(
            user=carol,
            type="export-jobs",
            params={"items": 5, "source": {"path": "/data/Report.CSV"}, "tags": ["red", "blue"], "dry_run": True},
        ),
        "failed": JobFactory.create(
            user=staff_user, type="demo", params={"items": "5"}, status="failed", error="ValueError: bad row 17"
        ),
        "plain": JobFactory.create(user=staff_user, type="demo", params={"items": 1, "note": None}),
    }


def found(client: Any, query: str, jobs: dict[str, Job]) -> set[str]:
    response = client.get(f"/api/jobs/?{query}")
    assert response.status_code == 200, response.content
    names = {str(job.pk): name for name, job in jobs.items()}
    return {names[row["id"]] for row in response.json()["results"]}


def search(client: Any, term: str, jobs: dict[str, Job]) -> set[str]:
    return found(client, f"search={quote(term)}", jobs)


# --- search ---------------------------------------------------------------------------------


def test_search_finds_the_middle_of_an_id_in_any_case(staff_api, jobs):
    middle = str(jobs["report"].pk)[9:23]  # across two hyphens
    assert search(staff_api, middle, jobs) == {"report"}
    assert search(staff_api, middle.upper(), jobs) == {"report"}


def test_search_finds_the_middle_of_a_type_and_of_a_creators_username(staff_api, jobs):
    assert search(staff_api, "PORT-J", jobs) == {"report"}
    assert search(staff_api, "the-search", jobs) == {"report"}


def test_search_finds_a_parameter_value_nested_or_not_but_not_a_key(staff_api, jobs):
    assert search(staff_api, "report.csv", jobs) == {"report"}
    assert search(staff_api, "blue", jobs) == {"report"}
    assert search(staff_api, "source", jobs) == set()
    assert search(staff_api, "dry_run", jobs) == set()


def test_search_finds_a_substring_of_the_error(staff_api, jobs):
    assert search(staff_api, "bad ROW 1", jobs) == {"failed"}


def test_search_of_a_whole_id_is_that_job_and_of_nothing_known_is_empty(staff_api, jobs):
    assert search(staff_api, str(jobs["plain"].pk), jobs) == {"plain"}
    assert search(staff_api, "nothing-is-called-this", jobs) == set()


def test_search_wildcards_are_plain_characters(staff_api, jobs):
    assert search(staff_api, "%", jobs) == set()
    assert search(staff_api, "r_d", jobs) == set()  # as a wildcard it would find "red"
    assert search(staff_api, "r%d", jobs) == set()


def test_search_sees_only_the_callers_jobs(api_client, user, jobs):
    JobFactory.create(user=user, type="export-jobs")
    api_client.force_authenticate(user=user)
    rows = api_client.get("/api/jobs/?search=export").json()["results"]
    assert [row["user"] for row in rows] == [user.pk]


# --- params.<key>=<value> -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("params.items=5", {"report"}),  # the number 5
        ('params.items="5"', {"failed"}),  # the string "5"
        ("params.items=2", set()),
        ("params.dry_run=true", {"report"}),
        ("params.note=null", {"plain"}),  # JSON null, not a missing key
        ("params.source.path=/data/Report.CSV", {"report"}),  # not JSON: the string it is
        ("params.source.path=/data/report.csv", set()),  # exact, case included
        ('params.source={"path": "/data/Report.CSV"}', {"report"}),
        ('params.tags=["red", "blue"]', {"report"}),
        ('params.tags=["red"]', set()),  # equal, not contained
        ("params.items=5&params.dry_run=true", {"report"}),
        ("params.items=5&params.dry_run=false", set()),
        ("params.items=1&type=demo", {"plain"}),
        ("params.missing=5", set()),
    ],
)
def test_params_filter_matches_the_exact_json_value(staff_api, jobs, query, expected):
    assert found(staff_api, query.replace("+", "%2B"), jobs) == expected


@pytest.mark.parametrize(
    "name",
    [
        "params.",
        "params.1abc",
        "params.a-b",
        "params.a..b",
        "params.a.",
        "params.a b",
        "params.a.b.c.d.e.f",
        "params.é",
    ],
)
def test_a_bad_parameter_name_is_a_400_naming_it(staff_api, jobs, name):
    response = staff_api.get(f"/api/jobs/?{quote(name)}=5")
    assert response.status_code == 400
    assert list(response.json()) == [name]
    assert "Not a parameter name" in response.json()[name][0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e999", "finite"),
        ('"\\ud800"', "Unicode"),
        ("[" * 40 + "]" * 40, "Nested deeper"),
    ],
)
def test_a_value_that_cannot_be_compared_is_a_400_naming_the_parameter(staff_api, jobs, value, message):
    response = staff_api.get(f"/api/jobs/?params.items={quote(value)}")
    assert response.status_code == 400
    assert message in response.json()["params.items"][0]


def test_a_parameter_given_twice_is_a_400(staff_api, jobs):
    response = staff_api.get("/api/jobs/?params.items=5&params.items=1")
    assert response.status_code == 400
    assert response.json() == {"params.items": ["Give each parameter once."]}


@pytest.mark.parametrize("value", ["%00", quote('"a\\u0000b"'), quote('{"\\u0000": 1}'), "NaN"])
def test_a_value_nothing_can_hold_matches_nothing_instead_of_failing(staff_api, jobs, value):
    assert found(staff_api, f"params.items={value}", jobs) == set()


def test_an_unknown_query_parameter_is_still_a_400(staff_api, jobs):
    response = staff_api.get("/api/jobs/?param.items=5&paramsitems=5")
    assert response.status_code == 400
    assert set(response.json()) == {"param.items", "paramsitems"}


def test_the_export_filters_take_params_too(jobs):
    assert set(filter_jobs(Job.objects.all(), {"params.items": 5})) == {jobs["report"]}
    with pytest.raises(ValueError, match="Not a parameter name"):
        filter_jobs(Job.objects.all(), {"params.9": 5})


def test_the_schema_documents_search_and_the_params_filter():
    from jobs.api.settings import generate_schema

    operation = generate_schema()["paths"]["/api/jobs/"]["get"]
    search = next(p for p in operation["parameters"] if p["name"] == "search")
    assert "parameter values" in search["description"]
    assert "params.<key>=<value>" in operation["description"]


# --- PostgreSQL: the indexes the plans use --------------------------------------------------

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the indexes exist on PostgreSQL only")


def _plan(queryset: Any) -> str:
    sql, args = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        # A handful of rows: without these, scanning the whole (tiny) table in order is cheapest.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", args)
        return "\n".join(row[0] for row in cursor.fetchall())


@postgres_only
def test_on_postgresql_a_search_reads_the_trigram_index(jobs):
    plan = _plan(filter_jobs(Job.objects.all(), {"search": "report.csv"}))
    assert "job_search_trgm" in plan, plan
    plan = _plan(filter_jobs(Job.objects.all(), {"search": "carol-the"}))  # a creator too: a bitmap OR
    assert "job_search_trgm" in plan, plan
    assert "BitmapOr" in plan, plan


@postgres_only
def test_on_postgresql_a_params_filter_reads_the_jsonb_index(jobs):
    plan = _plan(filter_jobs(Job.objects.all(), {"params.source.path": "/data/Report.CSV"}))
    assert "job_params_gin" in plan, plan

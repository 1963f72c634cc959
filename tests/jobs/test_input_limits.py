"""Bounded input on the HTTP side (docs/security.md, "Input limits"), written as the attacks:
oversized params, a body nested a thousand levels deep, a body of megabytes, and query
parameters or body fields the API does not know, each refused with a clear 400 (413 for
the body's size), nothing queued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework import serializers

from jobs import services
from jobs.models import Job
from jobs.registry import job, unregister

pytestmark = pytest.mark.django_db


class NoteParams(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True)
    blob = serializers.JSONField(required=False)


@pytest.fixture(autouse=True)
def _note_type() -> Iterator[None]:
    cache.delete_many(["throttle_token_127.0.0.1", "throttle_anon_127.0.0.1"])
    job("limits-note", params=NoteParams)(lambda ctx, params: None)
    yield
    unregister("limits-note")


@pytest.fixture
def client(api_client: Any, user: Any) -> Any:
    api_client.force_authenticate(user=user)
    return api_client


def _enqueue(client: Any, params: Any) -> Any:
    return client.post("/api/jobs/", {"type": "limits-note", "params": params}, format="json")


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# --- params ---------------------------------------------------------------------------------


def test_a_string_param_over_the_limit_is_a_400_naming_the_key_and_nothing_is_queued(client, settings):
    response = _enqueue(client, {"note": "x" * (settings.JOBADMIN_MAX_PARAM_STRING + 1)})

    assert response.status_code == 400, response.content
    assert "longer than 10000 characters" in response.json()["params"]["note"][0]
    assert not Job.objects.exists()


def test_a_long_string_deep_inside_a_param_is_named_by_its_path(client, settings):
    response = _enqueue(client, {"blob": {"rows": ["ok", "x" * (settings.JOBADMIN_MAX_PARAM_STRING + 1)]}})

    assert response.status_code == 400, response.content
    assert "(at blob.rows[1])" in response.json()["params"]["blob"][0]
    assert not Job.objects.exists()


def test_a_long_dictionary_key_inside_params_is_refused(client, settings):
    response = _enqueue(client, {"blob": {"k" * (settings.JOBADMIN_MAX_PARAM_STRING + 1): 1}})

    assert response.status_code == 400, response.content
    assert "params" in response.json()
    assert not Job.objects.exists()


def test_a_string_at_the_limit_is_accepted(client, settings):
    response = _enqueue(client, {"note": "x" * settings.JOBADMIN_MAX_PARAM_STRING})

    assert response.status_code == 201, response.content


def test_params_over_the_whole_document_limit_are_a_400_and_nothing_is_queued(client, settings):
    # Each string within its own bound; together over the document's 64 KiB.
    many = [f"{i:05d}" + "y" * 5000 for i in range(20)]
    response = _enqueue(client, {"blob": many})

    assert response.status_code == 400, response.content
    assert "at most 65536" in response.json()["params"]["non_field_errors"][0]
    assert not Job.objects.exists()


def test_params_nested_deeper_than_the_limit_are_refused_naming_the_key(user, settings):
    # Through the service (the admin's form, the CLI): the API's parser refuses such a body first.
    with pytest.raises(serializers.ValidationError) as caught:
        services.job_enqueue(
            job_type="limits-note", params={"blob": _nested(settings.JOBADMIN_MAX_JSON_DEPTH)}, actor=user
        )

    assert "Nested deeper than 32" in str(caught.value.detail)
    assert not Job.objects.exists()


def test_params_at_the_depth_limit_are_accepted(user, settings):
    # The params object is level 1, so its value may nest one level less.
    services.job_enqueue(
        job_type="limits-note", params={"blob": _nested(settings.JOBADMIN_MAX_JSON_DEPTH - 1)}, actor=user
    )


def test_a_body_at_the_depth_limit_is_accepted(client, settings):
    # The body is level 1, params level 2: the value of a param may nest the limit less two.
    response = _enqueue(client, {"blob": _nested(settings.JOBADMIN_MAX_JSON_DEPTH - 2)})

    assert response.status_code == 201, response.content


def test_the_service_refuses_oversized_params_too_whatever_the_way_in(user, settings):
    with pytest.raises(serializers.ValidationError) as caught:
        services.job_enqueue(job_type="limits-note", params={"note": "z" * 20_000}, actor=user)

    assert "note" in caught.value.detail
    assert not Job.objects.exists()


# --- the body -------------------------------------------------------------------------------


def _post_raw(client: Any, path: str, body: bytes) -> Any:
    return client.generic("POST", path, body, content_type="application/json")


def test_a_body_nested_a_thousand_levels_deep_is_a_400_not_a_500(client):
    body = ("[" * 1000 + "]" * 1000).encode()
    response = _post_raw(
        client, "/api/jobs/", json.dumps({"type": "limits-note", "params": {}})[:-1].encode() + b', "x": ' + body + b"}"
    )

    assert response.status_code == 400, response.content
    assert "nested deeper than 32 levels" in response.json()["detail"]
    assert not Job.objects.exists()


def test_a_body_nested_just_past_the_limit_is_a_400(client, settings):
    depth = settings.JOBADMIN_MAX_JSON_DEPTH
    body = ('{"type": "limits-note", "params": {"blob": ' + "[" * depth + "]" * depth + "}}").encode()

    response = _post_raw(client, "/api/jobs/", body)

    assert response.status_code == 400, response.content
    assert "nested deeper" in response.json()["detail"]


def test_a_five_megabyte_body_is_a_413_with_a_json_error_and_nothing_queued(client):
    body = json.dumps({"type": "limits-note", "params": {"note": "x" * 5_000_000}}).encode()

    response = _post_raw(client, "/api/jobs/", body)

    assert response.status_code == 413, response.content
    assert response.json() == {"detail": "The request body is larger than 1048576 bytes.", "code": "body_too_large"}
    assert not Job.objects.exists()


# --- unknown query parameters and body fields ------------------------------------------------


def test_an_unknown_query_parameter_on_the_jobs_list_is_a_400_naming_it(client):
    response = client.get("/api/jobs/?status=queued&colour=blue&page_size=10")

    assert response.status_code == 400, response.content
    assert response.json() == {"colour": ["Unknown query parameter."]}


def test_the_jobs_list_accepts_each_of_its_documented_parameters(client):
    query = (
        "status=queued&type=demo&queue=default&user=1&created_after=2020-01-01T00:00:00Z"
        "&created_before=2030-01-01T00:00:00Z&search=demo&ordering=-created_at&page=1&page_size=10&format=json"
        "&id=00000000-0000-0000-0000-000000000001"
    )
    assert client.get(f"/api/jobs/?{query}").status_code == 200


def test_list_filters_are_unknown_on_a_job_detail(client, user):
    created = services.job_enqueue(job_type="limits-note", params={}, user=user, actor=user)

    response = client.get(f"/api/jobs/{created.pk}/?status=queued")

    assert response.status_code == 400, response.content
    assert response.json() == {"status": ["Unknown query parameter."]}
    assert client.get(f"/api/jobs/{created.pk}/events/?after=0&limit=5").status_code == 200
    assert client.get(f"/api/jobs/{created.pk}/events/?page=2").json() == {"page": ["Unknown query parameter."]}


def test_an_unknown_query_parameter_on_a_monitoring_endpoint_is_a_400_naming_it(api_client, superuser):
    api_client.force_authenticate(user=superuser)

    response = api_client.get("/api/stats/?range=1d&foo=1")

    assert response.status_code == 400, response.content
    assert response.json() == {"foo": ["Unknown query parameter."]}
    assert api_client.get("/api/analytics/trends/?metric=throughput&interval=1h&range=1d").status_code == 200
    assert api_client.get("/api/alerts/?status=open&page_size=5").status_code == 200
    assert api_client.get("/api/alerts/?sort=id").json() == {"sort": ["Unknown query parameter."]}


def test_an_anonymous_request_with_an_unknown_parameter_is_still_a_401(api_client):
    assert api_client.get("/api/jobs/?colour=blue").status_code == 401


def test_an_unknown_body_field_on_enqueue_is_a_400_naming_it_and_nothing_is_queued(client):
    response = client.post("/api/jobs/", {"type": "limits-note", "params": {}, "priorty": 5}, format="json")

    assert response.status_code == 400, response.content
    assert response.json() == {"priorty": ["Unknown field."]}
    assert not Job.objects.exists()


def test_a_query_parameter_on_enqueue_is_a_400_and_nothing_is_queued(client):
    response = client.post("/api/jobs/?queue=high", {"type": "limits-note"}, format="json")

    assert response.status_code == 400, response.content
    assert response.json() == {"queue": ["Unknown query parameter."]}
    assert not Job.objects.exists()


def test_a_body_field_on_an_action_that_takes_no_body_is_a_400_and_nothing_changes(client, user):
    created = services.job_enqueue(job_type="limits-note", params={}, user=user, actor=user)

    response = client.post(f"/api/jobs/{created.pk}/cancel/", {"reason": "why not"}, format="json")

    assert response.status_code == 400, response.content
    assert response.json() == {"reason": ["Unknown field."]}
    assert Job.objects.get(pk=created.pk).status == "queued"


def test_an_unknown_body_field_on_bulk_and_on_the_token_endpoint_is_a_400(client, api_client, user):
    response = client.post("/api/jobs/bulk/", {"action": "cancel", "ids": [], "force": True}, format="json")
    assert response.status_code == 400
    assert response.json()["force"] == ["Unknown field."]
    api_client.force_authenticate(user=None)
    token = api_client.post("/api/auth/token/", {"username": "u", "password": "p", "otp": "1"}, format="json")
    assert token.status_code == 400
    assert token.json()["otp"] == ["Unknown field."]


def test_every_operation_accepts_the_query_parameters_it_documents_and_refuses_any_other(api_client, superuser):
    """The schema and the refusal agree: each documented parameter is known (whatever its
    value's fate), and one more is a 400 naming it, on every operation of the API."""
    from jobs.api.settings import generate_schema
    from monitoring.models import Alert, AlertRule

    api_client.force_authenticate(user=superuser)
    created = services.job_enqueue(job_type="limits-note", params={}, user=superuser, actor=superuser)
    rule = AlertRule.objects.create(name="limits", metric="failures", threshold=2)
    alert = Alert.objects.create(rule=rule, subject="s", severity="warning", message="m", value=3)
    document = generate_schema()
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            ids = {"/api/alerts/": alert.pk, "/api/alert-rules/": rule.pk}
            one = next((str(pk) for prefix, pk in ids.items() if path.startswith(prefix)), str(created.pk))
            url = path.replace("{id}", one).replace("{name}", "limits-note" if "/job-types/" in path else "default")
            query = "&".join(f"{name}=x" for name in [*names, "zz_unknown"])
            response = api_client.generic(method.upper(), f"{url}?{query}", "{}", content_type="application/json")
            assert response.status_code == 400, (method, path, response.status_code)
            body = response.json()
            assert body.get("zz_unknown") == ["Unknown query parameter."], (method, path, body)
            assert [name for name in names if body.get(name) == ["Unknown query parameter."]] == [], (method, path)
            checked += 1
    assert checked >= 25


def test_the_admin_enqueue_form_refuses_an_oversized_string_on_its_field(client, superuser, settings):
    from django.test import Client
    from django.urls import reverse

    browser = Client()
    browser.force_login(superuser)
    response = browser.post(
        reverse("admin:jobs_job_enqueue_type", args=["export-jobs"]),
        {"search": "s" * (settings.JOBADMIN_MAX_PARAM_STRING + 1), "_queue": "batch", "_priority": "0"},
    )

    assert response.status_code == 400
    assert "longer than 10000 characters" in response.context["form"].errors["search"][0]
    assert not Job.objects.exists()


@pytest.mark.parametrize(("name", "value"), [("JOBADMIN_MAX_PARAM_STRING", 0), ("JOBADMIN_MAX_JSON_DEPTH", 1)])
def test_a_bound_that_cannot_work_is_a_system_check_error(settings, name, value):
    from django.core import checks

    setattr(settings, name, value)

    errors = [message for message in checks.run_checks() if message.id == "jobs.E010"]
    assert len(errors) == 1
    assert name in errors[0].msg

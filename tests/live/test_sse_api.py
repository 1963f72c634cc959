"""The SSE and long-poll endpoints' refusals (tests/live/test_sse_e2e.py streams for real):
bad parameters are a 400 naming the field, a channel the caller may not read a 403 worded the
same whether or not its job exists, nothing streamed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from live.api import FORBIDDEN
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(user: Any) -> APIClient:
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.mark.parametrize(
    ("path", "params", "headers", "field"),
    [
        ("/api/stream/", {"channels": "job:nope"}, {}, "channels"),
        ("/api/stream/", {"channels": "bogus,all"}, {}, "channels"),
        ("/api/stream/", {"channels": ",".join(f"user:{n}" for n in range(21))}, {}, "channels"),
        ("/api/stream/", {"channels": ""}, {}, "channels"),
        ("/api/stream/", {"since": "-1"}, {}, "since"),
        ("/api/stream/", {"since": ""}, {}, "since"),
        ("/api/stream/", {}, {"HTTP_LAST_EVENT_ID": "twelve"}, "Last-Event-ID"),
        ("/api/stream/", {"sinse": "3"}, {}, "sinse"),
        ("/api/events/", {"wait": "31"}, {}, "wait"),
        ("/api/events/", {"after": "x"}, {}, "after"),
        ("/api/events/", {"channels": "job:123"}, {}, "channels"),
        ("/api/events/", {"wait": "5", "limit": "3"}, {}, "limit"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_field(
    client: APIClient, path: str, params: dict[str, str], headers: dict[str, Any], field: str
) -> None:
    response = client.get(path, params, **headers)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()


def test_another_users_job_and_a_job_that_does_not_exist_are_refused_alike(client: APIClient, other_user: Any) -> None:
    theirs = JobFactory.create(user=other_user)
    missing = uuid.uuid4()
    bodies = []
    for job_id in (theirs.pk, missing):
        for path, params in (
            (f"/api/jobs/{job_id}/stream/", {}),
            ("/api/stream/", {"channels": f"job:{job_id}"}),
            ("/api/events/", {"channels": f"job:{job_id}"}),
        ):
            response = client.get(path, params)
            assert response.status_code == 403, (path, response.content)
            bodies.append(response.json())
    assert all(body == {"detail": FORBIDDEN} for body in bodies)


def test_a_system_channel_names_the_permission_it_needs(client: APIClient) -> None:
    response = client.get("/api/events/", {"channels": "all"})
    assert response.status_code == 403
    assert "jobs.view_job" in response.json()["detail"]


def test_a_malformed_job_id_is_a_404_and_errors_are_json_for_an_event_source(client: APIClient) -> None:
    response = client.get("/api/jobs/not-a-uuid/stream/", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


def test_without_after_the_long_poll_answers_at_once_with_the_latest_event_id(client: APIClient, user: Any) -> None:
    from jobs.models import JobEvent

    job = JobFactory.create(user=user)
    JobEvent.objects.create(job=job, kind="created", owner_id=user.pk, payload={})
    response = client.get("/api/events/")
    assert response.status_code == 200
    assert not response.streaming  # under WSGI (the test client) it answers at once
    assert json.loads(response.content) == {"events": [], "last_event_id": JobEvent.objects.latest("id").id}


def test_anonymous_is_401(db: Any) -> None:
    for path in ("/api/stream/", "/api/events/", f"/api/jobs/{uuid.uuid4()}/stream/"):
        assert APIClient().get(path).status_code == 401
    assert APIClient().get("/api/stream/", {"token": "0" * 40}).status_code == 401


def test_a_streams_grant_ends_with_a_logout_a_password_change_a_deleted_token_or_a_revoked_permission(
    user: Any, staff_user: Any
) -> None:
    """What an open stream re-checks every JOBADMIN_SSE_KEEPALIVE s (live.streams.still_allowed)."""
    from django.test import Client
    from rest_framework.authtoken.models import Token

    from jobs import policy
    from live.streams import Grant, still_allowed

    own = (policy.Channel("user", str(user.pk)),)
    browser = Client()
    browser.force_login(user)
    session = browser.session.session_key
    assert still_allowed(Grant(user_id=user.pk, identity=("session", session), channels=own))
    browser.logout()
    assert not still_allowed(Grant(user_id=user.pk, identity=("session", session), channels=own))

    browser.force_login(user)
    session = browser.session.session_key
    user.set_password("another-pw-456")
    user.save()
    assert not still_allowed(Grant(user_id=user.pk, identity=("session", session), channels=own))

    token = Token.objects.create(user=user)
    assert still_allowed(Grant(user_id=user.pk, identity=("token", token.key), channels=own))
    token.delete()
    assert not still_allowed(Grant(user_id=user.pk, identity=("token", token.key), channels=own))

    staff_token = Token.objects.create(user=staff_user).key
    everything = (policy.Channel("all"),)
    assert still_allowed(Grant(user_id=staff_user.pk, identity=("token", staff_token), channels=everything))
    staff_user.user_permissions.clear()
    assert not still_allowed(Grant(user_id=staff_user.pk, identity=("token", staff_token), channels=everything))
    user.is_active = False
    user.save()
    token = Token.objects.create(user=user)
    assert not still_allowed(Grant(user_id=user.pk, identity=("token", token.key), channels=own))

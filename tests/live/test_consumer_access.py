"""Who may do what over ``/ws/jobs/``: the websocket leaks of issue 12 (request-stats, existence, origins)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from jobs import services
from live import messages
from tests.factories import UserFactory
from tests.live.test_consumers import TIMEOUT, asgi_app, connect, receive, run, send

pytestmark = pytest.mark.django_db(transaction=True)


def test_request_stats_is_forbidden_to_a_user_who_may_not_see_statistics(user: Any) -> None:
    async def scenario() -> None:
        communicator = await connect(user, relay=False)
        await send(communicator, type="request-stats")
        reply = await receive(communicator)
        assert reply["type"] == "error"
        assert reply["code"] == messages.FORBIDDEN
        await communicator.disconnect()

    run(scenario)


def test_staff_without_view_job_may_not_request_stats(db: Any) -> None:
    staff = UserFactory(is_staff=True)

    async def scenario() -> None:
        communicator = await connect(staff, relay=False)
        await send(communicator, type="request-stats")
        assert (await receive(communicator))["code"] == messages.FORBIDDEN
        await communicator.disconnect()

    run(scenario)


def test_a_job_of_another_user_and_a_missing_job_get_the_same_answer(user: Any, other_user: Any) -> None:
    theirs = services.job_enqueue(job_type="demo", params={}, user=other_user)

    async def scenario() -> None:
        communicator = await connect(user, relay=False)
        await send(communicator, type="subscribe", channel=f"job:{theirs.id}")
        existing = await receive(communicator)
        await send(communicator, type="subscribe", channel=f"job:{uuid.uuid4()}")
        missing = await receive(communicator)
        assert existing["code"] == missing["code"] == messages.FORBIDDEN
        assert existing["message"] == missing["message"]
        await communicator.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (b"http://127.0.0.1:8000", True),
        (b"http://127.0.0.1:9999", False),  # another port
        (b"https://127.0.0.1", False),  # another scheme (and port)
        (b"https://127.0.0.1:8000", False),  # another scheme
        (b"http://evil.example:8000", False),
        (b"https://app.example", True),  # named in JOBADMIN_CORS_ORIGINS
        (b"https://app.example:8443", False),
    ],
)
def test_the_origin_must_match_scheme_host_and_port(user: Any, settings: Any, origin: bytes, accepted: bool) -> None:
    settings.JOBADMIN_CORS_ORIGINS = ["https://app.example"]
    key = Token.objects.create(user=user).key

    async def scenario() -> None:
        communicator = WebsocketCommunicator(
            asgi_app(), f"/ws/jobs/?token={key}", headers=[(b"host", b"127.0.0.1:8000"), (b"origin", origin)]
        )
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected is accepted
        await communicator.disconnect()

    run(scenario)


def test_an_owners_live_updates_carry_no_worker_name(user: Any, settings: Any) -> None:
    from tests.live.test_consumers import make_job, progress

    settings.JOBADMIN_RELAY_IN_WEB = True  # the relay runs in the test's loop, as in test_consumers
    settings.JOBADMIN_RELAY_POLL = 0.005

    async def scenario() -> None:
        communicator = await connect(user)
        job = await make_job(user)
        await communicator.receive_from(timeout=TIMEOUT)  # created
        await _set_worker(job)
        await progress(job, 1)
        update = await receive(communicator)
        assert update["type"] == "job-update"
        assert "worker" not in update["job"]
        await communicator.disconnect()

    run(scenario)


async def _set_worker(job: Any) -> None:
    from channels.db import database_sync_to_async

    from jobs.models import Job

    await database_sync_to_async(lambda: Job.objects.filter(pk=job.pk).update(worker="host-a:123"))()
    job.worker = "host-a:123"

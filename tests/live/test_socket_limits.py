"""Open sockets follow access, and a user's sockets and subscriptions are bounded (hardening).

Found on a production-mode instance: revoking ``jobs.view_job``, deactivating a user, a logout
or deleting their token did not reach an open socket (it kept receiving every user's job
updates and ``request-stats``); one user could open any number of sockets, each holding any
number of subscriptions, and ``user:01``, ``user:001``, ... were each a subscription of their own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.authtoken.models import Token

from jobs import policy
from live import messages
from live.consumers import JobsConsumer
from live.relay import get_hub
from tests.conftest import grant
from tests.factories import UserFactory
from tests.live.test_consumers import (
    TIMEOUT,
    _relay_in_test_loop,  # noqa: F401 - autouse: the relay runs in the test's loop with Redis too
    asgi_app,
    assert_silent,
    connect,
    make_job,
    receive,
    receive_until,
    run,
    send,
)

pytestmark = pytest.mark.django_db(transaction=True)

INTERVAL = 0.2  # JOBADMIN_WS_REAUTH_INTERVAL in these tests
WITHIN = 3.0  # "within a few seconds": far more than the interval, far less than never


@pytest.fixture(autouse=True)
def _fast_reauth(settings: Any) -> None:
    settings.JOBADMIN_WS_REAUTH_INTERVAL = INTERVAL


async def closed_with(communicator: WebsocketCommunicator, timeout: float = WITHIN) -> int:
    """The close code the server sends, skipping any frame before it."""
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return int(output["code"])


@database_sync_to_async
def revoke(user: Any, *perms: str) -> None:
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.remove(Permission.objects.get(content_type__app_label=app_label, codename=codename))


@database_sync_to_async
def deactivate(user: Any) -> None:
    type(user).objects.filter(pk=user.pk).update(is_active=False)


# --- open sockets follow access -------------------------------------------------------------
def test_a_revoked_view_job_ends_the_system_subscriptions_and_request_stats_within_seconds(
    user: Any, other_user: Any
) -> None:
    viewer = grant(UserFactory(is_staff=True), policy.VIEW_JOBS)

    async def scenario() -> None:
        communicator = await connect(viewer)
        for channel in ("all", "stats", f"user:{other_user.pk}"):
            await send(communicator, type="subscribe", channel=channel)
            assert (await receive(communicator))["type"] == "subscribed"
        await send(communicator, type="request-stats")
        assert (await receive_until(communicator, "job-stats"))[-1]["type"] == "job-stats"
        await make_job(other_user)
        assert (await receive_until(communicator, "job-update"))[-1]["job"]["user"] == other_user.pk

        await revoke(viewer, policy.VIEW_JOBS)
        ended: set[str] = set()
        while len(ended) < 3:  # job-stats broadcasts may come before the revocation lands
            message = await receive(communicator, timeout=WITHIN)
            if message["type"] == "unsubscribed":
                assert message["reason"] == messages.FORBIDDEN
                ended.add(message["channel"])
        assert ended == {"all", "stats", f"user:{other_user.pk}"}

        await make_job(other_user)  # another user's job: no longer delivered
        await make_job(user)
        await assert_silent(communicator, wait=1.5)  # and no job-stats broadcast either
        await send(communicator, type="request-stats")
        refused = await receive(communicator)
        assert (refused["type"], refused["code"]) == ("error", messages.FORBIDDEN)
        await send(communicator, type="subscribe", channel="all")
        assert (await receive(communicator))["code"] == messages.FORBIDDEN
        own = await make_job(viewer)  # the socket stays open, and its own jobs still arrive
        assert (await receive(communicator))["job"]["id"] == str(own.pk)
        await communicator.disconnect()

    run(scenario)


def test_a_socket_that_left_channels_still_receives_its_own_users_events_live(user: Any, other_user: Any) -> None:
    """Leaving ``all`` and another user's channel (whatever its spelling), by ``unsubscribe`` or
    by the re-check, leaves the socket's own ``user:<id>``: its jobs still arrive, and they can
    only arrive live (the own channel has no catch-up read), while the other user's do not."""
    viewer = grant(UserFactory(is_staff=True), policy.VIEW_JOBS)

    async def scenario() -> None:
        communicator = await connect(viewer)
        for channel in ("all", f"user:0{other_user.pk}", "stats"):
            await send(communicator, type="subscribe", channel=channel)
            assert (await receive(communicator))["type"] == "subscribed"
        for channel in ("all", f"user:00{other_user.pk}"):
            await send(communicator, type="unsubscribe", channel=channel)
            assert (await receive(communicator))["type"] == "unsubscribed"
        mine = await make_job(viewer)
        assert (await receive_until(communicator, "job-update"))[-1]["job"]["id"] == str(mine.pk)
        await revoke(viewer, policy.VIEW_JOBS)  # the re-check ends ``stats``
        assert (await receive_until(communicator, "unsubscribed"))[-1]["channel"] == "stats"
        await make_job(other_user)
        mine = await make_job(viewer)
        assert (await receive(communicator))["job"]["id"] == str(mine.pk)
        await assert_silent(communicator, wait=1.5)
        await communicator.disconnect()

    run(scenario)


def test_a_deactivated_users_socket_is_closed_with_4401(user: Any) -> None:
    async def scenario() -> None:
        communicator = await connect(user)
        await deactivate(user)
        assert await closed_with(communicator) == messages.CLOSE_UNAUTHENTICATED

    run(scenario)


def session_socket(client: Client) -> WebsocketCommunicator:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"host", b"localhost"), (b"origin", b"http://localhost")]
    return WebsocketCommunicator(asgi_app(), "/ws/jobs/", headers=headers)


def test_a_logout_closes_the_session_socket_with_4401(user: Any) -> None:
    client = Client()
    client.force_login(user)
    stays = Client()
    stays.force_login(user)  # another session of the same user: its socket is not touched

    async def scenario() -> None:
        communicator, other = session_socket(client), session_socket(stays)
        for socket in (communicator, other):
            assert (await socket.connect(timeout=TIMEOUT))[0]
            assert (await receive(socket))["type"] == "welcome"
        await database_sync_to_async(client.logout)()  # the session is flushed
        assert await closed_with(communicator) == messages.CLOSE_UNAUTHENTICATED
        await send(other, type="ping")
        assert (await receive(other))["type"] == "pong"
        await asyncio.sleep(INTERVAL * 3)
        await send(other, type="ping")
        assert (await receive(other))["type"] == "pong"
        await other.disconnect()

    run(scenario)


def test_a_deleted_token_closes_the_token_socket_with_4401(user: Any) -> None:
    token = Token.objects.create(user=user)

    async def scenario() -> None:
        communicator = WebsocketCommunicator(asgi_app(), f"/ws/jobs/?token={token.key}")
        assert (await communicator.connect(timeout=TIMEOUT))[0]
        assert (await receive(communicator))["type"] == "welcome"
        await database_sync_to_async(token.delete)()
        assert await closed_with(communicator) == messages.CLOSE_UNAUTHENTICATED

    run(scenario)


def test_a_token_socket_of_a_user_deactivated_is_closed_with_4401(user: Any) -> None:
    token = Token.objects.create(user=user)

    async def scenario() -> None:
        communicator = WebsocketCommunicator(asgi_app(), f"/ws/jobs/?token={token.key}")
        assert (await communicator.connect(timeout=TIMEOUT))[0]
        assert (await receive(communicator))["type"] == "welcome"
        await deactivate(user)
        assert await closed_with(communicator) == messages.CLOSE_UNAUTHENTICATED

    run(scenario)


# --- caps -----------------------------------------------------------------------------------
def test_a_socket_over_the_users_cap_is_refused_with_an_error_and_4429(
    user: Any, other_user: Any, settings: Any
) -> None:
    settings.JOBADMIN_WS_MAX_SOCKETS_PER_USER = 3

    async def scenario() -> None:
        mine = [await connect(user) for _ in range(3)]
        refused = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
        refused.scope["user"] = user
        assert (await refused.connect(timeout=TIMEOUT))[0]
        error = await receive(refused)
        assert (error["type"], error["code"]) == ("error", messages.TOO_MANY_SOCKETS)
        assert await closed_with(refused) == messages.CLOSE_TOO_MANY_SOCKETS
        theirs = await connect(other_user)  # the cap is per user
        await mine[0].disconnect()
        await asyncio.sleep(0.05)
        again = await connect(user)  # a slot was freed
        for communicator in [*mine[1:], theirs, again]:
            await communicator.disconnect()
        assert get_hub().user_sockets == {}

    run(scenario)


def test_the_socket_cap_counts_the_users_sockets_in_other_processes(
    requires_redis: None, user: Any, settings: Any
) -> None:
    """Another web process writes its per-user counts to the cache (Redis); a connect here
    counts them, and a process that stopped refreshing them (killed) stops counting."""
    from django.core.cache import cache

    from live import relay

    settings.JOBADMIN_WS_MAX_SOCKETS_PER_USER = 3
    elsewhere = "other-process-1"
    cache.set(relay.WS_REGISTRY_KEY, {elsewhere: relay.time.time() + relay.WS_TTL}, timeout=relay.WS_TTL)
    relay.ws_user_sockets_store(token=elsewhere, counts={user.pk: 2})

    async def scenario() -> None:
        first = await connect(user)
        refused = WebsocketCommunicator(JobsConsumer.as_asgi(), "/ws/jobs/")
        refused.scope["user"] = user
        assert (await refused.connect(timeout=TIMEOUT))[0]
        assert (await receive(refused))["code"] == messages.TOO_MANY_SOCKETS
        assert await closed_with(refused) == messages.CLOSE_TOO_MANY_SOCKETS
        # The other process is gone: its registry entry has expired.
        await database_sync_to_async(cache.set)(relay.WS_REGISTRY_KEY, {elsewhere: relay.time.time() - 1})
        second = await connect(user)
        await first.disconnect()
        await second.disconnect()

    run(scenario)


def test_a_socket_holds_at_most_the_subscription_cap(staff_user: Any, user: Any, settings: Any) -> None:
    settings.JOBADMIN_WS_MAX_SUBSCRIPTIONS = 3  # the socket's own user channel counts

    async def scenario() -> None:
        communicator = await connect(staff_user)
        for channel in ("all", "stats"):
            await send(communicator, type="subscribe", channel=channel)
            assert (await receive(communicator))["type"] == "subscribed"
        await send(communicator, type="subscribe", channel="alerts")
        error = await receive(communicator)
        assert (error["type"], error["code"], error["channel"]) == ("error", messages.TOO_MANY_SUBSCRIPTIONS, "alerts")
        await send(communicator, type="subscribe", channel="all")  # again: not a new one
        assert (await receive(communicator))["type"] == "subscribed"
        for spelling in (f"user:0{user.pk}", f"user:00{user.pk}"):  # one channel, whatever the spelling
            await send(communicator, type="subscribe", channel=spelling)
            assert (await receive(communicator))["code"] == messages.TOO_MANY_SUBSCRIPTIONS
        await send(communicator, type="unsubscribe", channel="stats")
        assert (await receive(communicator))["type"] == "unsubscribed"
        await send(communicator, type="subscribe", channel="alerts")
        assert (await receive(communicator))["type"] == "subscribed"
        await communicator.disconnect()

    run(scenario)


# --- one spelling per channel ---------------------------------------------------------------
def test_user_01_is_the_same_subscription_as_user_1(staff_user: Any, user: Any, settings: Any) -> None:
    settings.JOBADMIN_WS_MAX_SUBSCRIPTIONS = 2

    async def scenario() -> None:
        communicator = await connect(staff_user)
        for spelling in (f"user:0{user.pk}", f"user:00{user.pk}", f"user:{user.pk}"):
            await send(communicator, type="subscribe", channel=spelling)
            reply = await receive(communicator)
            assert (reply["type"], reply["channel"]) == ("subscribed", f"user:{user.pk}")
        await make_job(user)
        assert (await receive(communicator))["type"] == "job-update"
        await assert_silent(communicator)  # once, not once per spelling
        await send(communicator, type="unsubscribe", channel=f"user:000{user.pk}")
        assert await receive(communicator) == {"type": "unsubscribed", "channel": f"user:{user.pk}"}
        await make_job(user)
        await assert_silent(communicator)
        await communicator.disconnect()

    run(scenario)


def test_a_job_id_in_upper_case_or_without_dashes_is_the_canonical_job_channel(user: Any) -> None:
    async def scenario() -> None:
        job = await make_job(user)
        communicator = await connect(user)
        for spelling in (str(job.pk).upper(), job.pk.hex, job.pk.hex.upper()):
            await send(communicator, type="subscribe", channel=f"job:{spelling}")
            reply = await receive(communicator)
            assert (reply["type"], reply["channel"]) == ("subscribed", f"job:{job.pk}")
        await communicator.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    "spelling",
    [
        "user:+{pk}",
        " user:{pk}",
        "user:{pk} ",
        "user:-{pk}",
        "user:{pk}\n",
        "user:\u0661",  # an Arabic-Indic digit one: str.isdigit() said yes
        "user:\u00b2",  # a superscript two: isdigit() yes, int() raised inside the consumer
        "user:99999999999999999999",  # past a database integer: the replay query raised
        "job:{{00000000-0000-0000-0000-000000000000}}",
        "job:urn:uuid:00000000-0000-0000-0000-000000000000",
        "USER:{pk}",
    ],
)
def test_other_spellings_are_not_a_channel_and_the_socket_stays_open(staff_user: Any, user: Any, spelling: str) -> None:
    channel = spelling.format(pk=user.pk)

    async def scenario() -> None:
        communicator = await connect(staff_user)
        await send(communicator, type="subscribe", channel=channel, since=0)
        reply = await receive(communicator)
        assert (reply["type"], reply["code"]) == ("error", messages.UNKNOWN_CHANNEL)
        await send(communicator, type="ping")
        assert (await receive(communicator))["type"] == "pong"
        await communicator.disconnect()

    run(scenario)

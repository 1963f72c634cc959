"""``jobadmin.routing.with_jobadmin``: the socket under the host's prefix, and the pages told where."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.core.asgi import get_asgi_application

from jobadmin.routing import with_jobadmin
from live import routing
from tests.live.test_consumers import TIMEOUT, run


@pytest.fixture
def mounted_at_ops() -> Any:
    application = with_jobadmin(get_asgi_application(), prefix="/ops")
    yield application
    routing.websocket_urlpatterns("")


@pytest.mark.django_db(transaction=True)
def test_the_socket_answers_under_the_prefix_and_not_at_the_root(mounted_at_ops: Any, user: Any) -> None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=user).key

    async def scenario() -> None:
        socket = WebsocketCommunicator(mounted_at_ops, f"/ops/ws/jobs/?token={token}")
        connected, _ = await socket.connect()
        assert connected
        assert (await socket.receive_json_from(timeout=TIMEOUT))["type"] == "welcome"
        await socket.disconnect()
        root = WebsocketCommunicator(mounted_at_ops, f"/ws/jobs/?token={token}")
        with pytest.raises(ValueError, match="No route found"):
            await root.connect()

    run(scenario)


def test_the_pages_are_given_the_mounted_path(mounted_at_ops: Any) -> None:
    from django.template import engines

    rendered = engines["django"].from_string("{% load jobadmin_live %}{% jobadmin_ws_path %}").render({})
    assert rendered == "/ops/ws/jobs/"


@pytest.mark.parametrize(
    ("prefix", "path"), [("", "/ws/jobs/"), ("/", "/ws/jobs/"), ("ops", "/ops/ws/jobs/"), ("a/b/", "/a/b/ws/jobs/")]
)
def test_one_spelling_per_prefix(prefix: str, path: str) -> None:
    routing.websocket_urlpatterns(prefix)
    try:
        assert routing.websocket_path() == path
    finally:
        routing.websocket_urlpatterns("")

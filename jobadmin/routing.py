"""``with_jobadmin``: JobAdmin's websocket (and what its web process needs) added to a project's
ASGI application.

    # asgi.py of a host project
    from django.core.asgi import get_asgi_application
    from jobadmin.routing import with_jobadmin

    application = with_jobadmin(get_asgi_application(), prefix="ops/")

HTTP goes to the host's application untouched; ``/ops/ws/jobs/`` is the socket, behind the
origin check and session or token authentication. This module may be imported before Django is
set up (as above); what needs the apps is imported when ``with_jobadmin`` is called, after
``get_asgi_application()`` has set Django up.
"""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter, URLRouter


def with_jobadmin(app: Any, *, prefix: str = "") -> ProtocolTypeRouter:
    """``app`` for HTTP, JobAdmin's socket at ``/<prefix>ws/jobs/``; ``prefix`` as in ``include()``."""
    from django.conf import settings

    from live.middleware import TokenAuthMiddleware, origin_validator
    from live.routing import websocket_urlpatterns
    from live.transport import coalesce_tcp_writes, websocket_auth_stack

    if settings.JOBADMIN_COALESCE_TCP_WRITES:
        coalesce_tcp_writes()
    socket = URLRouter(websocket_urlpatterns(prefix))
    return ProtocolTypeRouter(
        {"http": app, "websocket": origin_validator(websocket_auth_stack(TokenAuthMiddleware(socket)))}
    )

"""ASGI entry point: HTTP through Django, websockets through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

from jobadmin import process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")
# Before the settings load: a web process pools its database connections (JOBADMIN_DB_POOL_MAX).
process.mark_web()
# Django must be set up before routing (and the models it imports) is loaded.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from live.middleware import TokenAuthMiddleware, origin_validator  # noqa: E402
from live.routing import websocket_urlpatterns  # noqa: E402
from live.transport import coalesce_tcp_writes, websocket_auth_stack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": origin_validator(websocket_auth_stack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))),
    }
)


if settings.JOBADMIN_COALESCE_TCP_WRITES:
    coalesce_tcp_writes()

# Everything loaded so far lives as long as the process: keep it out of the garbage
# collector's full passes, which otherwise walk it all and showed up as 80-90 ms pauses
# in the p95 of large API pages (docs/benchmarks.md, "API").
gc.freeze()

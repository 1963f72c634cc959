"""The standalone project's ASGI entry point: HTTP through Django, the websocket through
``jobadmin.routing.with_jobadmin`` (as a host project's asgi.py does)."""

import gc
import os

from django.core.asgi import get_asgi_application

from jobadmin import process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")
# Before the settings load: a web process pools its database connections (JOBADMIN_DB_POOL_MAX).
process.mark_web()
# Django must be set up before routing (and the models it imports) is loaded.
django_asgi_app = get_asgi_application()

from jobadmin.routing import with_jobadmin  # noqa: E402

# The standalone project mounts JobAdmin at the root: the socket is /ws/jobs/.
application = with_jobadmin(django_asgi_app, prefix="")

# Everything loaded so far lives as long as the process: keep it out of the garbage
# collector's full passes, which otherwise walk it all and showed up as 80-90 ms pauses
# in the p95 of large API pages (docs/benchmarks.md, "API").
gc.freeze()

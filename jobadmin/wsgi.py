import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")
# Read by the settings: a web process pools its database connections (JOBADMIN_DB_POOL_MAX).
os.environ.setdefault("JOBADMIN_PROCESS", "web")
application = get_wsgi_application()

# Everything loaded so far lives as long as the process: keep it out of the garbage
# collector's full passes, which otherwise walk it all and showed up as 80-90 ms pauses
# in the p95 of large API pages (docs/benchmarks.md, "API").
gc.freeze()

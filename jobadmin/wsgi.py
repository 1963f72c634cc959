import gc
import os

from django.core.wsgi import get_wsgi_application

from jobadmin import process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jobadmin.settings")
# Before the settings load: a web process pools its database connections (JOBADMIN_DB_POOL_MAX).
process.mark_web()
application = get_wsgi_application()

# Everything loaded so far lives as long as the process: keep it out of the garbage
# collector's full passes, which otherwise walk it all and showed up as 80-90 ms pauses
# in the p95 of large API pages (docs/benchmarks.md, "API").
gc.freeze()

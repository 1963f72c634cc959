"""The standalone project's root URLconf: the admin with JobAdmin's staff pages, JobAdmin at
the root (``/api/``, ``/metrics``) through the same ``include`` a host project uses, and ``/``,
which sends each kind of user where they belong."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from jobadmin.views import landing_view

urlpatterns: list[URLPattern | URLResolver] = [
    # The monitor and analytics are on this admin site too (console.admin_site).
    path("admin/", admin.site.urls),
    path("", include("jobadmin.urls")),
    # Where each kind of user belongs (also the admin's "View site" link).
    path("", landing_view, name="jobadmin-landing"),
]
handler404 = "jobs.api.errors.not_found"
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

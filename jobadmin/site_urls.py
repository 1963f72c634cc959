"""The standalone project's root URLconf: the admin with JobAdmin's staff pages, and JobAdmin at
the root (``/api/``, ``/metrics``) through the same ``include`` a host project uses."""

from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

urlpatterns: list[URLPattern | URLResolver] = [
    # The monitor and analytics are on this admin site too (console.admin_site).
    path("admin/", admin.site.urls),
    path("", include("jobadmin.urls")),
]
handler404 = "jobs.api.errors.not_found"
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

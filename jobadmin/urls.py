from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from monitoring.views import prometheus_metrics

urlpatterns = [
    # Staff pages beside the model admin (monitor, analytics); before the admin so they win.
    path("admin/", include("console.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("jobs.urls")),
    path("api/", include("monitoring.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("metrics", prometheus_metrics, name="prometheus-metrics"),
]
handler404 = "jobs.api_errors.not_found"
if settings.DEBUG:
    urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

from django.urls import path
from rest_framework.routers import DefaultRouter

from jobs.views import JobViewSet, TokenView

router = DefaultRouter(trailing_slash=True)
router.register("jobs", JobViewSet, basename="job")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    *router.urls,
]

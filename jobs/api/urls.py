from django.urls import path
from rest_framework.routers import DefaultRouter

from jobs.api.batches import BatchViewSet
from jobs.api.schedules import ScheduleViewSet
from jobs.api.views import JobTypeViewSet, JobViewSet, QueueViewSet, TokenView

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("jobs", JobViewSet, basename="job")
router.register("job-types", JobTypeViewSet, basename="job-type")
router.register("queues", QueueViewSet, basename="queue")
router.register("batches", BatchViewSet, basename="batch")
router.register("schedules", ScheduleViewSet, basename="schedule")

urlpatterns = [
    path("auth/token/", TokenView.as_view(), name="api-token"),
    *router.urls,
]

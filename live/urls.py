"""The live endpoints of the JSON API: SSE and long-poll (docs/live.md); included under ``api/``."""

from django.urls import path

from live.longpoll import LongPollView
from live.sse import JobStreamView, StreamView

urlpatterns = [
    path("stream/", StreamView.as_view(), name="api-stream"),
    path("jobs/<str:pk>/stream/", JobStreamView.as_view(), name="api-job-stream"),
    path("events/", LongPollView.as_view(), name="api-events"),
]

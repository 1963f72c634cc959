"""Websocket routes (``/ws/jobs/``)."""

from django.urls import path

from live.consumers import JobsConsumer

websocket_urlpatterns: list = [path("ws/jobs/", JobsConsumer.as_asgi())]

"""Websocket routes (``/ws/jobs/``)."""

websocket_urlpatterns: list = []

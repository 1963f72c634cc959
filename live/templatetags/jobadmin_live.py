"""``{% jobadmin_ws_path %}``: the websocket's path where the project mounted it (``live.routing``);
``{% jobadmin_stream_path %}`` and ``{% jobadmin_poll_path %}``: the SSE and long-poll fallbacks' (``live.urls``)."""

from __future__ import annotations

from django import template
from django.urls import reverse

from live.routing import websocket_path

register = template.Library()


@register.simple_tag
def jobadmin_ws_path() -> str:
    return websocket_path()


@register.simple_tag
def jobadmin_stream_path() -> str:
    return reverse("api-stream")


@register.simple_tag
def jobadmin_poll_path() -> str:
    return reverse("api-events")

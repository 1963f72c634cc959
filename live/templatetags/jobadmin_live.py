"""``{% jobadmin_ws_path %}``: the websocket's path where the project mounted it (``live.routing``)."""

from __future__ import annotations

from django import template

from live.routing import websocket_path

register = template.Library()


@register.simple_tag
def jobadmin_ws_path() -> str:
    return websocket_path()

"""What the SSE and long-poll views share: their authentication (also ``?token=``), their JSON
errors whatever the ``Accept`` header, the ``channels`` parameter, and the policy check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, TokenAuthentication
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from jobs import policy
from jobs.api.views import ApiView
from live.streams import MAX_CHANNELS


class QueryTokenAuthentication(TokenAuthentication):
    """``?token=<key>``: an ``EventSource`` cannot send an ``Authorization`` header."""

    def authenticate(self, request: Request) -> Any:
        key = request.query_params.get("token")
        if not key:
            return None
        return self.authenticate_credentials(key[:64])


class QueryTokenScheme(OpenApiAuthenticationExtension):
    target_class = "live.api.QueryTokenAuthentication"
    name = "queryTokenAuth"
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "query", "name": "token"}


class JSONErrors(BaseContentNegotiation):
    """Errors are JSON, also for a client that asked for ``text/event-stream`` only (an
    ``EventSource``): DRF would answer it 406. The streams themselves are not DRF responses."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        renderer = renderers[0]
        return renderer, renderer.media_type

    def select_parser(self, request: Any, parsers: Any) -> Any:
        return parsers[0] if parsers else None


_HEX = "[0-9a-fA-F]"
_UUID = f"{_HEX}{{8}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{12}}"
CHANNEL = f"(job:{_UUID}|user:[0-9]{{1,18}}|batch:[0-9]{{1,18}}|stats|alerts|all)"
CHANNELS_PATTERN = f"^{CHANNEL}(,{CHANNEL}){{0,{MAX_CHANNELS - 1}}}$"


@extend_schema_field({"type": "string", "pattern": CHANNELS_PATTERN, "example": "job:3f2a…,user:7"})
class ChannelsField(serializers.CharField):
    """``channels``: comma-separated channel names (``job:<uuid>,user:7,all``)."""

    def to_internal_value(self, data: Any) -> list[policy.Channel]:  # type: ignore[override]
        text = super().to_internal_value(data)
        names = [name.strip() for name in text.split(",") if name.strip()]
        if not names:
            raise serializers.ValidationError("Name at least one channel.")
        if len(names) > MAX_CHANNELS:
            raise serializers.ValidationError(f"At most {MAX_CHANNELS} channels.")
        channels: list[policy.Channel] = []
        unknown = []
        for name in names:
            channel = policy.parse_channel(name)
            if channel is None:
                unknown.append(name[:80])
            elif channel not in channels:
                channels.append(channel)
        if unknown:
            kinds = "job:<uuid>, user:<id>, batch:<id>, stats, alerts, all"
            raise serializers.ValidationError([f"Unknown channel {name!r} ({kinds})." for name in unknown])
        return channels


# One wording for every refused job, user or batch channel, whether or not the job exists.
_WHO = f"your own jobs and user channel, or everyone's with the '{policy.VIEW_JOBS}' permission"
FORBIDDEN = f"{policy.FORBIDDEN_CHANNEL}: {_WHO}."
TOKEN_PATTERN = r"^[0-9a-fA-F]{1,64}$"  # an API token's key (DRF's are 40 hex digits)
TOKEN_HELP = "An API token, for clients that cannot send the Authorization header (EventSource)."


class LiveView(ApiView, APIView):
    authentication_classes: Sequence[type[BaseAuthentication]] = [
        TokenAuthentication,
        QueryTokenAuthentication,
        SessionAuthentication,
    ]
    renderer_classes: Sequence[type[BaseRenderer]] = [JSONRenderer]
    content_negotiation_class = JSONErrors

    def channels_of(self, request: Request, channels: list[policy.Channel] | None) -> list[policy.Channel]:
        """The channels asked for (the user's own by default), each allowed by the policy.

        A refused one is a 403 worded the same whether or not its job exists.
        """
        wanted = channels or [policy.Channel("user", str(request.user.pk))]
        for channel in wanted:
            if not policy.may_subscribe(user=request.user, channel=channel):
                if channel.kind in policy.SYSTEM_CHANNELS:
                    raise exceptions.PermissionDenied(policy.missing(policy.VIEW_JOBS, f"The {channel.name!r} channel"))
                raise exceptions.PermissionDenied(FORBIDDEN)
        return wanted


def serves_live(request: Request) -> bool:
    """Whether an ASGI server (daphne) runs this request: only there can a response stay open
    without holding a thread. Under WSGI the stream sends what the log has and ends, and the
    long-poll answers at once."""
    return "wsgi.input" not in request._request.META

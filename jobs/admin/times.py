"""Times on the staff pages (docs/time.md): each one a ``<time datetime="ISO">`` that
``jobadmin/admin/time.js`` shows in the viewer's own zone, labelled ("Dec 7, 2026, 14:05:09 EST");
the text the server writes is the UTC fallback for a page without scripts, labelled too.

The admin's date filters ("Today", "Past 7 days", the date drill-down) are days of the server's
``TIME_ZONE`` (UTC by default), not the viewer's: the server cannot know the viewer's zone when it
filters. The filter's title says which zone its days are in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

UTC_FALLBACK = "%b %-d, %Y, %H:%M:%S UTC"


def iso_time(value: datetime | None, *, kind: str = "") -> SafeString | str:
    """``value`` as a ``<time>`` element (``kind="clock"``: a time of day); "—" for none."""
    if value is None:
        return "—"
    utc = value.astimezone(UTC)
    if kind == "clock":
        return format_html(
            '<time datetime="{}" data-format="clock">{}</time>', utc.isoformat(), utc.strftime("%H:%M:%S UTC")
        )
    return format_html('<time datetime="{}">{}</time>', utc.isoformat(), utc.strftime(UTC_FALLBACK))


class ServerDayFilter(admin.DateFieldListFilter):
    """Django's date filter, its title naming the zone its days are in (the server's ``TIME_ZONE``)."""

    def __init__(self, field: Any, request: Any, params: Any, model: Any, model_admin: Any, field_path: str) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = f"{self.title} (days in {timezone.get_current_timezone_name()})"

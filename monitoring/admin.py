"""Admin registration: alert rules (editable), alerts (acknowledge/resolve) and metric samples (read only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.admin.times import iso_time
from jobs.exceptions import TransitionNotAllowed
from monitoring import alerts
from monitoring.metrics import SERIES_FIELDS
from monitoring.models import Alert, AlertRule, MetricSample


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ["name", "metric", "comparison", "threshold", "window_seconds", "severity", "enabled", "channels"]
    list_filter = ["enabled", "severity", "metric", "builtin"]
    list_editable = ["enabled"]
    search_fields = ["name", "description"]
    readonly_fields = ["builtin"]
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled", "builtin"]}),
        ("Condition", {"fields": ["metric", "comparison", "threshold", "window_seconds", "severity"]}),
        (
            "Notification",
            {
                "fields": [
                    "notify_websocket",
                    "notify_email",
                    "email_recipients",
                    "notify_webhook",
                    "webhook_url",
                    "notify_slack",
                    "slack_webhook_url",
                ]
            },
        ),
    ]

    @admin.display(description="Channels")
    def channels(self, obj: AlertRule) -> str:
        return ", ".join(obj.channels) or "-"


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["id", "rule", "severity", "status", "subject", "message", "created", "resolved"]
    list_filter = ["status", "severity", "rule"]
    search_fields = ["message", "subject"]
    date_hierarchy = "created_at"
    list_select_related = ["rule"]
    actions = ["acknowledge", "resolve"]
    readonly_fields = [f.name for f in Alert._meta.fields]

    class Media:
        js = ["jobadmin/admin/time.js"]  # every <time> in the viewer's zone (jobs.admin.times)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Alert) -> str:
        return iso_time(obj.created_at)

    @admin.display(description="Resolved", ordering="resolved_at")
    def resolved(self, obj: Alert) -> str:
        return iso_time(obj.resolved_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _apply(self, request: HttpRequest, queryset: QuerySet[Alert], action: Any, verb: str) -> None:
        done = refused = 0
        for alert in queryset:
            try:
                action(alert=alert, actor=request.user)
                done += 1
            except TransitionNotAllowed:
                refused += 1
        self.message_user(request, f"{done} alert(s) {verb}.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"{refused} alert(s) were not in a state that allows it.", messages.WARNING)

    @admin.action(description="Acknowledge selected alerts", permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._apply(request, queryset, alerts.alert_acknowledge, "acknowledged")

    @admin.action(description="Resolve selected alerts", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._apply(request, queryset, alerts.alert_resolve, "resolved")


@admin.register(MetricSample)
class MetricSampleAdmin(admin.ModelAdmin):
    list_display = ["sampled_at", *SERIES_FIELDS]
    date_hierarchy = "sampled_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

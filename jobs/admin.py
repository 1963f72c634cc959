"""Jobs in the Django admin. Status is read-only here: every change goes through services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from jobs.models import Job, JobEvent, JobResult, Queue


class JobEventInline(admin.TabularInline):
    model = JobEvent
    fields = ["id", "kind", "actor", "created_at"]
    readonly_fields = ["id", "kind", "actor", "created_at"]
    extra = 0
    can_delete = False
    ordering = ["-id"]
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "type", "status", "queue", "user", "progress", "created_at", "duration"]
    list_filter = ["status", "type", "queue"]
    search_fields = ["id", "type", "user__username"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    inlines = [JobEventInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Job._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "job", "actor", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["job", "actor"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(JobResult)
class JobResultAdmin(admin.ModelAdmin):
    list_display = ["job", "created_at"]
    raw_id_fields = ["job"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ["name", "concurrency", "paused"]
    readonly_fields = ["paused", "missed_wakeups"]

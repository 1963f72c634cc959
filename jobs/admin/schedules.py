"""Schedules in the admin: the list, a form whose next five runs show as the timing is typed,
and pause, resume and run now as actions; every write goes through ``jobs.services``."""

from __future__ import annotations

from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join

from jobs import policy, services
from jobs.admin.bulk import BulkReport
from jobs.models import Schedule
from jobs.registry import all_job_types, get_job_type
from jobs.services.schedules import FIELDS


def _when(due: Any, zone: str) -> str:
    """A due time in the schedule's zone, labelled, and in UTC."""
    local = due.astimezone(ZoneInfo(zone))
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname()} ({due.astimezone(UTC):%H:%M} UTC)"


class ScheduleForm(forms.ModelForm):
    type = forms.ChoiceField(choices=())
    request: HttpRequest | None = None

    class Meta:
        model = Schedule
        fields = list(FIELDS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A viewer without jobs.change_schedule gets the form without its fields (all read-only).
        type_field = self.fields.get("type")
        if isinstance(type_field, forms.ChoiceField):
            type_field.choices = [(t.name, t.name) for t in all_job_types()]
        for name in ("cron", "timezone", "interval_minutes"):
            if name in self.fields:
                self.fields[name].widget.attrs["data-schedule-timing"] = name

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        owner = self.instance.user if self.instance.pk else getattr(self.request, "user", None)
        candidate = Schedule(**{name: cleaned.get(name) for name in FIELDS}, user=owner)
        candidate.params = cleaned.get("params") or {}
        candidate.cron = cleaned.get("cron") or ""
        for field, problems in services.schedule_problems(candidate).items():
            self.add_error(field if field in self.fields else None, _messages(problems))
        if owner is not None and "type" in cleaned and not self.errors.get("type"):
            if not policy.may_run_job_type(user=owner, job_type=get_job_type(cleaned["type"])):
                self.add_error("type", f"The schedule's owner ({owner}) may not run {cleaned['type']!r}.")
        return cleaned


def _messages(problems: Any) -> list[str]:
    if isinstance(problems, dict):
        return [f"{key}: {message}" for key, value in problems.items() for message in _messages(value)]
    if isinstance(problems, list):
        return [str(message) for message in problems]
    return [str(problems)]


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ("name", "type", "timing", "enabled", "next_run", "last_run", "user")
    list_filter = ("enabled", "type")
    search_fields = ("name", "type")
    readonly_fields = ("next_five_runs", "recent_runs", "next_run", "last_run", "last_error", "user")
    actions = ("pause", "resume", "run_now")

    class Media:
        js = ("jobadmin/admin/schedule_form.js",)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    # Who may: the policy (seeing them is a statistic; changing them needs jobs.change_schedule).
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return policy.may_see_schedules(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return policy.may_change_schedules(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return policy.may_change_schedules(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return policy.may_change_schedules(request.user)

    @admin.display(description="when")
    def timing(self, schedule: Schedule) -> str:
        if schedule.cron:
            return f"{schedule.cron} ({schedule.timezone})"
        return f"every {schedule.interval_minutes} min"

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, schedule: Schedule) -> str:
        return _when(schedule.next_run_at, schedule.timezone) if schedule.next_run_at else "paused"

    @admin.display(description="last run", ordering="last_run_at")
    def last_run(self, schedule: Schedule) -> str:
        return _when(schedule.last_run_at, schedule.timezone) if schedule.last_run_at else "–"

    @admin.display(description="next five runs")
    def next_five_runs(self, schedule: Schedule) -> str:
        try:
            url = reverse("schedule-preview")
        except NoReverseMatch:
            url = ""
        runs = services.upcoming_runs(schedule) if schedule.pk and not services.schedule_problems(schedule) else []
        items = format_html_join("", "<li>{}</li>", ((_when(due, schedule.timezone),) for due in runs))
        return format_html(
            '<ol class="ja-next-runs" data-preview-url="{}" aria-live="polite">{}</ol>'
            '<p class="help">Shown as you type the timing; a paused schedule\'s as if resumed now.</p>',
            url,
            items,
        )

    @admin.display(description="recent runs")
    def recent_runs(self, schedule: Schedule) -> str:
        if not schedule.pk:
            return "–"
        jobs = schedule.jobs.order_by("-created_at")[:10]
        rows = (
            (reverse("admin:jobs_job_change", args=[job.pk]), f"{job.created_at:%Y-%m-%d %H:%M} UTC", job.status)
            for job in jobs
        )
        return format_html_join("", '<li><a href="{}">{}</a>: {}</li>', rows) or "none yet"

    def save_model(self, request: HttpRequest, obj: Schedule, form: Any, change: bool) -> None:
        values = {name: form.cleaned_data[name] for name in FIELDS if name in form.cleaned_data}
        if change:
            saved = services.schedule_update(
                schedule=Schedule.objects.get(pk=obj.pk), values=values, actor=request.user
            )
        else:
            saved = services.schedule_create(values=values, user=request.user, actor=request.user)
        obj.pk, obj.next_run_at = saved.pk, saved.next_run_at

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        services.schedule_delete(schedule=obj, actor=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            services.schedule_delete(schedule=schedule, actor=request.user)

    @admin.action(description="Pause the selected schedules")
    def pause(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, services.schedule_pause, "Pause", "now paused")

    @admin.action(description="Resume the selected schedules")
    def resume(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, services.schedule_resume, "Resume", "resumed")

    @admin.action(description="Run the selected schedules now (one job each)")
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._each(request, queryset, services.schedule_run_now, "Run now", "queued a job")

    def _each(self, request: HttpRequest, queryset: QuerySet[Schedule], service: Any, label: str, done: str) -> None:
        """``service`` on each schedule, reported as one message; one the policy refuses (its owner
        may not run its type) is named with the reason."""
        report = BulkReport(label, ("schedule", "schedules"))
        for schedule in queryset:
            try:
                service(schedule=schedule, actor=request.user)
            except policy.AccessDenied as exc:
                report.refuse(schedule, str(exc))
            else:
                report.did(schedule, done)
        report.send(self, request)

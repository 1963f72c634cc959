"""Jobs in the Django admin: the job list, the job page, bulk actions and the enqueue form.

Status is read-only here: every change goes through ``jobs.services``, which refuses an
illegal transition with ``TransitionNotAllowed``; each action reports per job what
happened, as admin messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from rest_framework import serializers

from jobs import policy, selectors, services
from jobs.admin import job_page
from jobs.admin.bulk import BulkReport
from jobs.admin.forms import SUBMISSION_FIELD, build_enqueue_form
from jobs.admin.job_list import CreatedFilter, JobChangeList
from jobs.admin.job_page import format_duration, job_duration_seconds, progress_bar, status_badge
from jobs.admin.times import iso_time
from jobs.exceptions import IdempotencyKeyReused, JobError, TransitionNotAllowed
from jobs.filters import job_search
from jobs.models import TRANSITIONS, Job, JobEvent, JobResult, JobStatus, Queue
from jobs.registry import UnknownJobType, all_job_types, get_job_type

ADMIN_MEDIA_CSS = {"all": ["jobadmin/admin/admin.css", "jobadmin/admin/jobpage.css"]}


def _bulk_action(name: str) -> Callable[..., None]:
    """The list page's bulk action for one action of ``TRANSITIONS`` (``cancel_jobs``, ...)."""

    def run(model_admin: JobAdmin, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        model_admin._run_action(request, queryset, name)

    run.__name__ = f"{name}_jobs"
    return admin.action(description=f"{name.capitalize()} selected jobs", permissions=["change"])(run)


class JobTypeFilter(admin.SimpleListFilter):
    """The registered types, plus any older type still present in the history."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = {t.name for t in all_job_types()}
        names.update(selectors.job_type_names_in_history(limit=100))
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(type=self.value()) if self.value() else queryset


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in selectors.queue_names()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        return queryset.filter(queue=self.value()) if self.value() else queryset


class BatchFilter(admin.SimpleListFilter):
    """A batch's members (``?batch=<id>``, as the API's ``batch`` filter); the newest batches offered."""

    title = "batch"
    parameter_name = "batch"
    OFFERED = 20

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        batches = policy.visible_batches(user=request.user).order_by("-created_at", "-id")[: self.OFFERED]
        offered = [(str(batch.pk), f"#{batch.pk} {batch.name}") for batch in batches]
        value = self.value()
        if value and value.isdigit() and value not in {pk for pk, _ in offered}:
            offered.insert(0, (value, f"#{value}"))  # an older batch, followed from a link
        return offered

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(batch_id=int(value)) if value.isdigit() else queryset.none()


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "short_id",
        "type",
        "status_display",
        "progress_display",
        "queue",
        "user",
        "created_display",
        "duration_display",
    ]
    list_display_links = ["short_id"]
    list_filter = [
        "status",
        JobTypeFilter,
        QueueFilter,
        BatchFilter,
        ("user", admin.RelatedOnlyFieldListFilter),
        ("created_at", CreatedFilter),
    ]
    # Shows the search box; the search itself is ``jobs.filters.job_search`` (get_search_results).
    search_fields = ["type"]
    search_help_text = "Text in the job id, type, creator's username, parameter values or error (any case)."
    date_hierarchy = "created_at"
    list_select_related = ["user"]
    list_per_page = 50
    actions = [*(_bulk_action(name) for name in TRANSITIONS), "cleanup_stalled"]
    change_form_template = "admin/jobs/job/job_page.html"
    change_list_template = "admin/jobs/job/change_list.html"

    class Media:
        css = ADMIN_MEDIA_CSS
        js = ["jobadmin/admin/time.js"]  # every <time> in the viewer's zone (jobs.admin.times)

    # --- list columns -------------------------------------------------------------------------

    @admin.display(description="Created", ordering="created_at")
    def created_display(self, obj: Job) -> str:
        return iso_time(obj.created_at)

    @admin.display(description="ID", ordering="id")
    def short_id(self, obj: Job) -> str:
        return format_html(
            '<span title="{}" class="ja-mono" data-job-id="{}">{}</span>', obj.pk, obj.pk, str(obj.pk)[:8]
        )

    @admin.display(description="Status", ordering="status")
    def status_display(self, obj: Job) -> str:
        return status_badge(obj.status)

    @admin.display(description="Progress", ordering="progress")
    def progress_display(self, obj: Job) -> str:
        return progress_bar(obj)

    @admin.display(description="Duration", ordering="duration")
    def duration_display(self, obj: Job) -> str:
        return format_duration(job_duration_seconds(obj))

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Job], search_term: str) -> Any:
        """The API's ``search`` (``jobs.filters.job_search``); it joins nothing, so no duplicates."""
        return job_search(queryset, search_term), False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[JobChangeList]:
        return JobChangeList

    # --- permissions: nothing is added or edited by hand --------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return policy.may_see_all_jobs(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Status changes go through the actions; "change" is the right to act on anyone's job.
        return policy.may_sweep_jobs(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Job._meta.fields]

    # --- bulk actions -------------------------------------------------------------------------

    def _run_action(self, request: HttpRequest, queryset: QuerySet[Job], action: str) -> None:
        label, service = action.capitalize(), services.JOB_ACTIONS[action]
        report = BulkReport(label, ("job", "jobs"))
        for job in queryset:
            if not policy.may_act_on_job(user=request.user, job=job):
                report.refuse(job.pk, "not allowed for you")
                continue
            try:
                updated = service(job=job, actor=request.user)
            except TransitionNotAllowed as exc:
                report.refuse(job.pk, str(exc))
                continue
            report.did(job.pk, action_outcome(action, updated))
        report.send(self, request)

    @admin.action(description="Clean up stalled jobs (all, not only the selected)", permissions=["change"])
    def cleanup_stalled(self, request: HttpRequest, queryset: QuerySet[Job] | None = None) -> None:
        report_cleanup(self, request)

    # --- extra pages ----------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("enqueue/", view(self.enqueue_view), name="jobs_job_enqueue"),
            path("enqueue/<str:type_name>/", view(self.enqueue_view), name="jobs_job_enqueue_type"),
            path("cleanup-stalled/", view(self.cleanup_stalled_view), name="jobs_job_cleanup_stalled"),
            path("<uuid:job_id>/act/<str:action>/", view(self.act_view), name="jobs_job_act"),
            path("<uuid:job_id>/download/", view(self.download_view), name="jobs_job_download"),
            path("<uuid:job_id>/live/", view(self.live_view), name="jobs_job_live"),
            *super().get_urls(),
        ]

    def enqueue_view(self, request: HttpRequest, type_name: str | None = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied(policy.missing(policy.VIEW_JOBS, "The job admin"))
        type_name = type_name or request.GET.get("type") or None
        job_type = None
        form = None
        if type_name:
            try:
                job_type = get_job_type(type_name)
            except UnknownJobType:
                raise Http404(f"No job type {type_name!r}.") from None
            try:
                policy.require_may_run_job_type(user=request.user, job_type=job_type)
            except policy.AccessDenied as exc:
                raise PermissionDenied(str(exc)) from None
            form = build_enqueue_form(job_type, request.POST if request.method == "POST" else None)
            if request.method == "POST" and form.is_valid():
                queue = form.cleaned_data["_queue"]
                if not selectors.queue_known(queue):
                    form.add_error("_queue", "Unknown queue.")
                else:
                    asked = {
                        "job_type": job_type.name,
                        "params": form.params(),
                        "user": request.user,
                        "queue": queue,
                        "priority": form.cleaned_data["_priority"],
                        "actor": request.user,
                    }
                    submission = form.cleaned_data[SUBMISSION_FIELD]
                    key = f"admin-form:{submission}" if submission else None
                    try:
                        enqueued = services.job_enqueue_once(key=key, **asked)
                    except serializers.ValidationError as exc:
                        form.add_params_errors(exc.detail)
                    except IdempotencyKeyReused:
                        form.add_error(
                            None, "This form was already sent with other values. Reload it to queue a new job."
                        )
                    except JobError as exc:
                        form.add_error(None, str(exc))
                    else:
                        job = enqueued.job
                        if enqueued.replayed:
                            note = f"This form was already sent: it queued {job.type} job {job.pk}, nothing more."
                            self.message_user(request, note, messages.INFO)
                        else:
                            self.message_user(request, f"Queued {job.type} job {job.pk}.", messages.SUCCESS)
                        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Enqueue a {job_type.name} job" if job_type else "Enqueue a job",
            "opts": self.model._meta,
            "job_types": policy.runnable_job_types(user=request.user, job_types=all_job_types()),
            "job_type": job_type,
            "form": form,
            "media": self.media + form.media if form else self.media,
        }
        status = 400 if form is not None and request.method == "POST" else 200
        return TemplateResponse(request, "admin/jobs/job/enqueue.html", context, status=status)

    def cleanup_stalled_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        if not policy.may_sweep_jobs(request.user):
            raise PermissionDenied(policy.missing(policy.CHANGE_JOBS, "Cleaning up every user's stalled jobs"))
        report_cleanup(self, request)
        return HttpResponseRedirect(_safe_next(request, reverse("admin:jobs_job_changelist")))

    def act_view(self, request: HttpRequest, job_id: uuid.UUID, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        if action not in TRANSITIONS:
            raise Http404("Unknown action.")
        job = get_object_or_404(Job, pk=job_id)
        if not policy.may_act_on_job(user=request.user, job=job):
            raise PermissionDenied(policy.ACT_ON_OTHERS)
        self._run_action(request, Job.objects.filter(pk=job.pk), action)
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def download_view(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponseBase:
        job = get_object_or_404(Job, pk=job_id)
        if not policy.may_see_job(user=request.user, job=job):
            raise PermissionDenied(policy.missing(policy.VIEW_JOBS, "Another user's result"))
        result = selectors.job_result(job=job)
        if result is None or not result.file:
            raise Http404("This job has no result file.")
        name = (result.file.name or "result").rsplit("/", 1)[-1]
        return FileResponse(result.file.open("rb"), as_attachment=True, filename=name)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        # The list's script follows its rows on the `all` channel from here (replaying what
        # happened between the render and the subscription) and paints badges with these labels.
        extra = {
            "job_since": selectors.job_event_latest_id(),
            "job_status_labels": dict(JobStatus.choices),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=extra)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Where the page's stream resumes, read before the job: an event committed in between is
        # replayed (it may repeat what the page shows, which is harmless), never lost.
        since = selectors.job_event_latest_id()
        job = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if job is not None:
            extra.update(job_page.page_context(job, request, since=since))
            extra.setdefault("title", f"Job: {job.type}")
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def live_view(self, request: HttpRequest, job_id: uuid.UUID) -> JsonResponse:
        """The job page's sections, and its timeline and log rows after ``?after=<event id>``
        (``jobs.admin.job_page.live_state``): what its job-updates do not carry."""
        after = request.GET.get("after", "0")
        if not after.isdigit():
            return JsonResponse({"after": ["An event id (a whole number)."]}, status=400)
        read_at = selectors.job_event_latest_id()  # before the job: its sections are at least this new
        job = self._visible_job(request, job_id)
        return JsonResponse(job_page.live_state(job, request, after=int(after), read_at=read_at))

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        """The job's own history: its event log, who did what and when (not the admin's
        ``LogEntry`` rows, which nothing here writes: every change is an event)."""
        try:
            job = self._visible_job(request, uuid.UUID(object_id))
        except ValueError:
            raise Http404("No such job.") from None
        page, rows = job_page.history_page(job, request.GET.get("page"))
        context = {
            **self.admin_site.each_context(request),
            "title": f"History: {job.type} {job.pk}",
            "subtitle": None,
            "opts": self.model._meta,
            "object": job,
            "job": job,
            "page_obj": page,
            "job_history": rows,
            "media": self.media,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/jobs/job/history.html", context)

    def _visible_job(self, request: HttpRequest, job_id: uuid.UUID) -> Job:
        if not self.has_view_permission(request):
            raise PermissionDenied(policy.missing(policy.VIEW_JOBS, "The job admin"))
        return get_object_or_404(Job, pk=job_id)


# What an action that leaves a running job running did: it asked, and the worker answers at
# the job's next checkpoint (``TRANSITIONS``), when the page shows the status it led to.
PENDING_OUTCOMES = {
    "cancel": "cancel requested — it stops at its next checkpoint, then shows Cancelled.",
    "pause": "pause requested — it pauses at its next checkpoint, then shows Paused.",
    "resume": "the pause was withdrawn — it keeps running.",
}


def action_outcome(action: str, job: Job) -> str:
    """What ``action`` did to ``job`` (as the service returned it), in words: never "done, now
    running" for a pause that only asked."""
    if job.status == JobStatus.RUNNING:
        return PENDING_OUTCOMES[action]
    return f"now {job.status}."


def _safe_next(request: HttpRequest, default: str) -> str:
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


def report_cleanup(model_admin: admin.ModelAdmin, request: HttpRequest) -> None:
    outcomes = services.jobs_cleanup_stalled(actor=request.user)
    if not outcomes:
        model_admin.message_user(request, "No stalled jobs: nothing to clean up.", messages.INFO)
        return
    report = BulkReport("Clean up stalled", ("job", "jobs"))
    for outcome in outcomes:
        report.did(outcome.job_id, f"now {outcome.status} ({outcome.reason.rstrip('.')})")
    # A stalled job given up is the sweep doing its work, yet still news that needs reading.
    model_admin.message_user(request, report.text(), messages.WARNING)


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "job", "actor", "created_at"]
    list_filter = ["kind"]
    raw_id_fields = ["job", "actor"]
    search_fields = ["job__id"]

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
    readonly_fields = ["paused", "pending_wakeups"]
    actions = ["pause_queues", "resume_queues"]

    def _run(self, request: HttpRequest, queryset: QuerySet[Queue], pause: bool) -> None:
        service = services.queue_pause if pause else services.queue_resume
        for queue in queryset:
            try:
                service(name=queue.name, actor=request.user)
            except JobError as exc:
                self.message_user(request, f"Queue {queue.name}: {exc}", messages.WARNING)
            else:
                verb = "paused" if pause else "resumed"
                self.message_user(request, f"Queue {queue.name}: {verb}.", messages.SUCCESS)

    def has_pause_permission(self, request: HttpRequest) -> bool:
        return policy.may_pause_queues(request.user)

    @admin.action(description="Pause selected queues", permissions=["pause"])
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._run(request, queryset, pause=True)

    @admin.action(description="Resume selected queues", permissions=["pause"])
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[Queue]) -> None:
        self._run(request, queryset, pause=False)


# The schedules' and the batches' admins register themselves on import.
from jobs.admin import batches as _batches  # noqa: E402, F401
from jobs.admin import schedules as _schedules  # noqa: E402, F401

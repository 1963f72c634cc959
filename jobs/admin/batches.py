"""Batches in the admin: the list (status, counts and progress read from the members, one query
per page) and the batch page (its members live over ``batch:<id>``, the aggregate, cancel and
retry-failed); every action goes through ``jobs.services`` and is recorded there."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from jobs import policy, services
from jobs.admin import ADMIN_MEDIA_CSS, progress_bar, status_badge
from jobs.admin.bulk import BulkReport
from jobs.admin.times import iso_time
from jobs.exceptions import TransitionNotAllowed
from jobs.models import Batch, Job, JobEvent, JobStatus

MEMBERS_SHOWN = 200  # the page lists this many members; the job list filtered by batch has them all
# Each action: the service, its label, and what it says when done.
BATCH_ACTIONS: dict[str, tuple[Any, str, str]] = {
    "cancel": (services.batch_cancel, "Cancel", "cancelled its unfinished members"),
    "retry": (services.batch_retry, "Retry failed", "queued its failed members again"),
}


def _summary(batch: Batch) -> services.BatchSummary:
    """The summary the list page computed for its whole page, else this batch's own."""
    summary = getattr(batch, "summary", None)
    return summary if summary is not None else services.batch_summary(batch)


def counts_text(summary: services.BatchSummary) -> str:
    """The non-zero counts, in the statuses' order ("3 running · 7 completed")."""
    shown = [f"{summary.counts[status]} {status}" for status in JobStatus.values if summary.counts[status]]
    return " · ".join(shown) or "no members"


def aggregate_bar(progress: float) -> str:
    value = round(progress)
    return format_html(
        '<span class="ja-progress" role="progressbar" aria-label="Batch progress" aria-valuemin="0" '
        'aria-valuemax="100" aria-valuenow="{}" data-batch-progress><span class="ja-progress-fill" '
        'style="width:{}%"></span><span class="ja-progress-text">{}%</span></span>',
        value,
        value,
        value,
    )


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("name", "status_display", "counts_display", "progress_display", "created_display", "user")
    list_display_links = ("name",)
    search_fields = ("name", "user__username")
    list_select_related = ("user",)
    list_per_page = 50
    actions = ("cancel_batches", "retry_batches")
    change_form_template = "admin/jobs/batch/batch_page.html"

    class Media:
        css = ADMIN_MEDIA_CSS
        js = ("jobadmin/admin/time.js",)  # every <time> in the viewer's zone (jobs.admin.times)

    # --- who may: the policy (seeing everyone's batches is jobs.view_job; acting, jobs.change_job)
    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return policy.may_see_all_jobs(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return policy.may_act_on_batch(user=request.user, batch=obj)
        return policy.may_sweep_jobs(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # batches are created through the API (their members are validated there)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # retention removes them with their members

    # --- the list -----------------------------------------------------------------------------
    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        page = list(changelist.result_list)  # evaluated once: the template iterates this cache
        summaries = services.batch_summaries(page)
        for batch in page:
            batch.summary = summaries[batch.pk]  # type: ignore[attr-defined]
        return changelist

    @admin.display(description="Status")
    def status_display(self, batch: Batch) -> str:
        return status_badge(_summary(batch).status)

    @admin.display(description="Members")
    def counts_display(self, batch: Batch) -> str:
        summary = _summary(batch)
        url = f"{reverse('admin:jobs_job_changelist')}?batch={batch.pk}"
        return format_html('<a href="{}">{}</a>: {}', url, summary.total, counts_text(summary))

    @admin.display(description="Progress")
    def progress_display(self, batch: Batch) -> str:
        return aggregate_bar(_summary(batch).progress)

    @admin.display(description="Created", ordering="created_at")
    def created_display(self, batch: Batch) -> str:
        return iso_time(batch.created_at)

    @admin.action(description="Cancel the selected batches (their unfinished members)", permissions=["change"])
    def cancel_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        self._act(request, queryset, "cancel")

    @admin.action(description="Retry the failed members of the selected batches", permissions=["change"])
    def retry_batches(self, request: HttpRequest, queryset: QuerySet[Batch]) -> None:
        self._act(request, queryset, "retry")

    def _act(self, request: HttpRequest, batches: Iterable[Batch], action: str) -> None:
        """One action on each batch, reported as one message: done, refused (nothing to do), or not allowed."""
        service, label, done = BATCH_ACTIONS[action]
        report = BulkReport(label, ("batch", "batches"))
        for batch in batches:
            if not policy.may_act_on_batch(user=request.user, batch=batch):
                report.refuse(batch, policy.ACT_ON_OTHERS_BATCH)
                continue
            try:
                service(batch=batch, actor=request.user)
            except TransitionNotAllowed as exc:
                report.refuse(batch, str(exc))
            else:
                report.did(batch, done)
        report.send(self, request)

    # --- the batch page -----------------------------------------------------------------------
    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:batch_id>/act/<str:action>/", view(self.act_view), name="jobs_batch_act"),
            *super().get_urls(),
        ]

    def act_view(self, request: HttpRequest, batch_id: int, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        if action not in BATCH_ACTIONS:
            raise Http404("Unknown action.")
        if not self.has_view_permission(request):
            raise PermissionDenied(policy.missing(policy.VIEW_JOBS, "The batch admin"))
        batch = get_object_or_404(Batch, pk=batch_id)
        if not policy.may_act_on_batch(user=request.user, batch=batch):
            raise PermissionDenied(policy.ACT_ON_OTHERS_BATCH)
        self._act(request, [batch], action)
        return HttpResponseRedirect(reverse("admin:jobs_batch_change", args=[batch.pk]))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        batch = self.get_object(request, object_id)
        if batch is None or not self.has_view_permission(request, batch):
            return super().change_view(request, object_id, form_url, extra_context)  # Django's 404 / 403
        context = {
            **self.admin_site.each_context(request),
            **batch_page_context(batch, request),
            "title": f"Batch: {batch.name}",
            "opts": self.model._meta,
            "original": batch,
            "has_view_permission": True,
            "media": self.media,
        }
        return TemplateResponse(request, self.change_form_template, context)


def batch_page_context(batch: Batch, request: HttpRequest) -> dict[str, Any]:
    """The aggregate, the first ``MEMBERS_SHOWN`` members and the actions ``request.user`` may take."""
    summary = services.batch_summary(batch)
    members = list(batch.members.order_by("created_at", "id")[:MEMBERS_SHOWN])
    may_act = policy.may_act_on_batch(user=request.user, batch=batch)
    allowed = {"cancel": summary.status == services.BatchStatus.RUNNING, "retry": summary.counts["failed"] > 0}
    return {
        "batch": batch,
        "summary": summary,
        "batch_status_badge": status_badge(summary.status),
        "batch_progress_bar": aggregate_bar(summary.progress),
        "batch_counts": [(status, summary.counts[status]) for status in JobStatus.values],
        "batch_times": {
            "created": iso_time(batch.created_at),
            "finished": iso_time(batch.finished_at),
            "eta": iso_time(summary.eta, kind="clock"),
        },
        "batch_actions": [(name, label, allowed[name]) for name, (_, label, _) in BATCH_ACTIONS.items()]
        if may_act
        else [],
        "members": [_member_row(job) for job in members],
        "members_hidden": summary.total - len(members),
        "members_url": f"{reverse('admin:jobs_job_changelist')}?batch={batch.pk}",
        "on_complete_url": reverse("admin:jobs_job_change", args=[batch.on_complete_job_id])
        if batch.on_complete_job_id
        else "",
        # The page's event: the server replays what the members did between rendering and connecting.
        "latest_event_id": JobEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0,
    }


def _member_row(job: Job) -> dict[str, Any]:
    return {
        "job": job,
        "url": reverse("admin:jobs_job_change", args=[job.pk]),
        "badge": status_badge(job.status),
        "bar": progress_bar(job),
        "updated": iso_time(job.updated_at),
    }

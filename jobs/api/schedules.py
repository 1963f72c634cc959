"""The schedules API: ``/api/schedules/`` (DESIGN.md "Schedules"; docs/schedules.md).

Seeing schedules needs ``jobs.view_job`` or ``jobs.change_schedule``; creating, changing,
pausing, resuming, running and deleting need ``jobs.change_schedule``, and the schedule's
owner must be allowed to run its type (``jobs.services.schedules`` asks the policy).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import services
from jobs.api.input import StrictSerializer
from jobs.api.permissions import CanChangeSchedules, CanSeeSchedules, SignedIn
from jobs.api.schema import errors
from jobs.api.serializers import JobDetailSerializer, ParamsField
from jobs.api.views import ApiView
from jobs.models import PRIORITY_MAX, PRIORITY_MIN, JobStatus, Schedule
from jobs.schedules import next_runs, when_problems

RECENT_RUNS = 10


class ScheduleWriteSerializer(StrictSerializer):
    """What a client sets; the timing and the job are checked by ``jobs.services.schedules``."""

    name = serializers.CharField(max_length=100, required=False)
    type = serializers.CharField(max_length=100, help_text="A registered job type (see /api/job-types/).")
    params = ParamsField(required=False, default=dict, help_text="As for POST /api/jobs/.")
    queue = serializers.CharField(max_length=50, required=False, allow_blank=True, help_text="Empty: the type's.")
    priority = serializers.IntegerField(
        required=False, allow_null=True, min_value=PRIORITY_MIN, max_value=PRIORITY_MAX, help_text="Null: the type's."
    )
    cron = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        help_text="Five cron fields in `timezone`, e.g. `0 3 * * 1-5`.",
    )
    timezone = serializers.CharField(max_length=64, required=False, default="UTC", help_text="An IANA time zone.")
    interval_minutes = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="Instead of `cron`: every this many minutes."
    )
    enabled = serializers.BooleanField(required=False, default=True)


class PreviewQuerySerializer(serializers.Serializer):
    cron = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    timezone = serializers.CharField(max_length=64, required=False, default="UTC")
    interval_minutes = serializers.IntegerField(required=False, allow_null=True, default=None)


class PreviewSerializer(serializers.Serializer):
    next_runs = serializers.ListField(child=serializers.DateTimeField(), help_text="The next five due times.")


class RecentRunSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True, help_text="The job's error message, if it failed.")


class ScheduleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    type = serializers.CharField()
    params = ParamsField()
    queue = serializers.CharField(allow_blank=True)
    priority = serializers.IntegerField(allow_null=True)
    cron = serializers.CharField(allow_blank=True)
    timezone = serializers.CharField()
    interval_minutes = serializers.IntegerField(allow_null=True)
    enabled = serializers.BooleanField()
    next_run_at = serializers.DateTimeField(allow_null=True, help_text="Null while paused.")
    next_runs = serializers.SerializerMethodField(help_text="The next five due times, also while paused.")
    last_run_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True, help_text="Why it paused itself (its run was refused).")
    recent_jobs = serializers.SerializerMethodField(help_text="Its latest jobs, newest first, with their outcomes.")
    user = serializers.IntegerField(source="user_id", allow_null=True, help_text="Its owner: its jobs run as them.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_next_runs(self, schedule: Schedule) -> list[str]:
        field = serializers.DateTimeField()
        return [field.to_representation(due) for due in services.upcoming_runs(schedule)]

    @extend_schema_field(RecentRunSerializer(many=True))
    def get_recent_jobs(self, schedule: Schedule) -> Any:
        jobs = schedule.jobs.order_by("-created_at").only("id", "status", "created_at", "finished_at", "error")
        return RecentRunSerializer(jobs[:RECENT_RUNS], many=True).data


def _action(summary: str, response: Any = None) -> Any:
    return extend_schema(
        summary=summary, request=None, responses={200: response or ScheduleSerializer, **errors(403, 404)}
    )


@extend_schema_view(
    list=extend_schema(summary="Schedules", responses={200: ScheduleSerializer(many=True), **errors(403)}),
    retrieve=extend_schema(summary="One schedule", responses={200: ScheduleSerializer, **errors(403, 404)}),
    create=extend_schema(
        summary="Create a schedule",
        request=ScheduleWriteSerializer,
        responses={201: ScheduleSerializer, **errors(403, 413)},
        description="A cron expression in `timezone`, or `interval_minutes`; checked like an enqueue of its job.",
    ),
    partial_update=extend_schema(
        summary="Change a schedule",
        request=ScheduleWriteSerializer(partial=True),
        responses={200: ScheduleSerializer, **errors(403, 404, 413)},
    ),
    destroy=extend_schema(summary="Delete a schedule (its jobs stay)", responses={204: None, **errors(403, 404)}),
)
class ScheduleViewSet(ApiView, viewsets.ViewSet):
    permission_classes = [SignedIn, CanSeeSchedules]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    body_actions = frozenset({"create", "partial_update"})
    query_serializers = {"preview": PreviewQuerySerializer}
    serializer_class = ScheduleSerializer
    # What drf-spectacular reads the path's `id` (an integer) from; the views query for themselves.
    queryset = Schedule.objects.none()

    def get_permissions(self) -> Any:
        if self.action in ("list", "retrieve", "preview"):
            return super().get_permissions()
        return [SignedIn(), CanChangeSchedules()]

    def _get(self, pk: Any) -> Schedule:
        if not str(pk).isdigit():
            raise Http404
        schedule = Schedule.objects.select_related("user").filter(pk=int(pk)).first()
        if schedule is None:
            raise Http404
        return schedule

    def _answer(self, schedule: Schedule, code: int = status.HTTP_200_OK) -> Response:
        return Response(ScheduleSerializer(schedule).data, status=code)

    def list(self, request: Request) -> Response:
        schedules = Schedule.objects.select_related("user").all()
        return Response(ScheduleSerializer(schedules, many=True).data)

    def retrieve(self, request: Request, pk: Any = None) -> Response:
        return self._answer(self._get(pk))

    def create(self, request: Request) -> Response:
        body = ScheduleWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        schedule = services.schedule_create(values=body.validated_data, user=request.user, actor=request.user)
        return self._answer(schedule, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: Any = None) -> Response:
        schedule = self._get(pk)
        body = ScheduleWriteSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        schedule = services.schedule_update(schedule=schedule, values=body.validated_data, actor=request.user)
        return self._answer(schedule)

    def destroy(self, request: Request, pk: Any = None) -> Response:
        services.schedule_delete(schedule=self._get(pk), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="The next five runs of a timing, before it is saved",
        parameters=[PreviewQuerySerializer],
        responses={200: PreviewSerializer, **errors(403)},
    )
    @action(detail=False, methods=["get"])
    def preview(self, request: Request) -> Response:
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        if problems := when_problems(**query.validated_data):
            raise serializers.ValidationError(problems)
        runs = next_runs(**query.validated_data, after=timezone.now(), count=5)
        return Response(PreviewSerializer({"next_runs": runs}).data)

    @_action("Pause a schedule (it queues nothing until resumed)")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: Any = None) -> Response:
        return self._answer(services.schedule_pause(schedule=self._get(pk), actor=request.user))

    @_action("Resume a schedule (from its next due time; the paused runs are skipped)")
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: Any = None) -> Response:
        return self._answer(services.schedule_resume(schedule=self._get(pk), actor=request.user))

    @extend_schema(
        summary="Run a schedule now: one job, also while paused (its next run stays)",
        request=None,
        responses={201: JobDetailSerializer, **errors(403, 404)},
    )
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: Any = None) -> Response:
        job = services.schedule_run_now(schedule=self._get(pk), actor=request.user)
        return Response(JobDetailSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED)

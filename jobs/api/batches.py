"""The batches API: ``/api/batches/`` (DESIGN.md "Batches"; docs/batches.md).

A user sees and acts on their own batches; ``jobs.view_job`` sees everyone's and
``jobs.change_job`` acts on them (``jobs.policy``). A batch the caller may not see is a 404.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import policy, services
from jobs.api.input import StrictSerializer
from jobs.api.pagination import CappedPageNumberPagination
from jobs.api.schema import errors
from jobs.api.serializers import BulkEnqueueMemberSerializer, ParamsField
from jobs.api.views import IDEMPOTENCY_HEADER, ApiView, EnqueueRateThrottle, by_index, idempotency_key
from jobs.models import Batch
from jobs.services.batches import BatchStatus


class OnCompleteSerializer(StrictSerializer):
    type = serializers.CharField(max_length=100, help_text="A job type the batch's owner may run.")
    params = ParamsField(required=False, allow_null=True, help_text="As for POST /api/jobs/.")


class BatchCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    jobs = BulkEnqueueMemberSerializer(
        many=True, allow_empty=False, help_text="The members, all checked before any is queued (JOBADMIN_BATCH_MAX)."
    )
    on_complete = OnCompleteSerializer(
        required=False, allow_null=True, help_text="A job queued once, when every member has finished."
    )


class BatchOnCompleteSerializer(serializers.Serializer):
    """A batch's ``on_complete`` as it was checked and stored (``jobs.services.batches``)."""

    type = serializers.CharField(help_text="The job type queued once every member has finished.")
    params = ParamsField(help_text="Its params, as validated against the type's params schema.")


@extend_schema_field(BatchOnCompleteSerializer)
class OnCompleteField(serializers.JSONField):
    """``Batch.on_complete``, documented as ``BatchOnCompleteSerializer``; the value is passed through."""


class BatchCountsSerializer(serializers.Serializer):
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    paused = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()


class BatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.SerializerMethodField(help_text="running, then completed, failed or cancelled.")
    counts = serializers.SerializerMethodField(help_text="Members by job status.")
    total = serializers.SerializerMethodField(help_text="How many members it has.")
    progress = serializers.SerializerMethodField(help_text="0-100; a finished member counts 100.")
    eta = serializers.SerializerMethodField()
    on_complete = OnCompleteField(allow_null=True, help_text="The job queued when every member has finished, or null.")
    on_complete_job = serializers.UUIDField(source="on_complete_job_id", allow_null=True)
    user = serializers.IntegerField(source="user_id", allow_null=True)
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)

    def _summary(self, batch: Batch) -> services.BatchSummary:
        cache: dict[int, services.BatchSummary] = self.__dict__.setdefault("_summaries", {})
        if batch.pk not in cache:
            cache[batch.pk] = services.batch_summary(batch)
        return cache[batch.pk]

    @extend_schema_field(serializers.ChoiceField(choices=BatchStatus.ALL))
    def get_status(self, batch: Batch) -> str:
        return self._summary(batch).status

    @extend_schema_field(BatchCountsSerializer)
    def get_counts(self, batch: Batch) -> dict[str, int]:
        return self._summary(batch).counts

    @extend_schema_field(OpenApiTypes.INT)
    def get_total(self, batch: Batch) -> int:
        return self._summary(batch).total

    @extend_schema_field(OpenApiTypes.FLOAT)
    def get_progress(self, batch: Batch) -> float:
        return self._summary(batch).progress

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_eta(self, batch: Batch) -> str | None:
        eta = self._summary(batch).eta
        return None if eta is None else serializers.DateTimeField().to_representation(eta)


class BatchDetailSerializer(BatchSerializer):
    members = serializers.SerializerMethodField(help_text="The members' ids, in the order given.")

    @extend_schema_field(serializers.ListField(child=serializers.UUIDField()))
    def get_members(self, batch: Batch) -> list[str]:
        ids = batch.members.order_by("created_at", "id").values_list("id", flat=True)
        return [str(pk) for pk in ids]


def _action(summary: str) -> Any:
    return extend_schema(summary=summary, request=None, responses={200: BatchDetailSerializer, **errors(403, 404, 409)})


@extend_schema_view(
    list=extend_schema(summary="Batches", responses={200: BatchSerializer(many=True), **errors(400)}),
    retrieve=extend_schema(summary="One batch with its members", responses={200: BatchDetailSerializer, **errors(404)}),
)
class BatchViewSet(ApiView, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = BatchSerializer
    pagination_class = CappedPageNumberPagination
    body_actions = frozenset({"create"})

    def get_queryset(self) -> Any:
        return policy.visible_batches(user=self.request.user).order_by("-created_at", "-id")

    def get_throttles(self) -> list[Any]:
        if self.action == "create":
            return [*super().get_throttles(), EnqueueRateThrottle()]
        return super().get_throttles()

    def _get(self, pk: Any) -> Batch:
        if not str(pk).isdigit():
            raise Http404
        batch = self.get_queryset().filter(pk=int(pk)).first()
        if batch is None:
            raise Http404
        return batch

    def _actionable(self, pk: Any) -> Batch:
        batch = self._get(pk)
        if not policy.may_act_on_batch(user=self.request.user, batch=batch):
            self.permission_denied(self.request, message=policy.ACT_ON_OTHERS_BATCH)
        return batch

    def _answer(self, batch: Batch, code: int = status.HTTP_200_OK) -> Response:
        return Response(BatchDetailSerializer(batch).data, status=code)

    def retrieve(self, request: Request, pk: Any = None) -> Response:
        return self._answer(self._get(pk))

    @extend_schema(
        summary="Create a batch",
        request=BatchCreateSerializer,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="As on POST /api/jobs/: the same key within 24 h answers with the batch it created.",
            )
        ],
        responses={201: BatchDetailSerializer, **errors(400, 403, 413, 422)},
        description=(
            "Every member is checked as `POST /api/jobs/` checks one before anything is queued; a 400 names "
            'each bad member by its index: `{"jobs": {"3": {"params": {...}}}}`. At most `JOBADMIN_BATCH_MAX`.'
        ),
    )
    def create(self, request: Request) -> Response:
        key = idempotency_key(request)
        body = BatchCreateSerializer(data=request.data)
        if not body.is_valid():
            raise ValidationError(by_index(body.errors))
        data = body.validated_data
        outcome = services.batch_create_once(
            key=key,
            name=data["name"],
            members=data["jobs"],
            user=request.user,
            on_complete=data.get("on_complete"),
            actor=request.user,
        )
        response = self._answer(outcome.batch, status.HTTP_201_CREATED)
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @_action("Cancel a batch: every unfinished member")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: Any = None) -> Response:
        return self._answer(services.batch_cancel(batch=self._actionable(pk), actor=request.user))

    @_action("Retry a batch's failed members")
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: Any = None) -> Response:
        return self._answer(services.batch_retry(batch=self._actionable(pk), actor=request.user))

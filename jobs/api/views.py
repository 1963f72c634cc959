"""The jobs API: thin views over selectors and services.

Views never change a job's status: every action calls one service, and domain errors
become HTTP errors in ``jobs.api.errors`` (``TransitionNotAllowed`` → 409 with the current
status). A job the caller may not see is a 404 (the queryset is already narrowed to
what they may see); one they see but may not act on is a 403.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, status, viewsets
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import BaseParser, FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from jobs import policy, selectors, services
from jobs.api.input import BoundedJSONParser, StrictInputMixin
from jobs.api.pagination import CappedPageNumberPagination
from jobs.api.permissions import CanPauseQueue, CanSeeQueues, CanSweepJobs, SignedIn
from jobs.api.schema import errors
from jobs.api.serializers import (
    AuthTokenResponseSerializer,
    AuthTokenSerializer,
    BulkActionSerializer,
    BulkEnqueueResponseSerializer,
    BulkEnqueueSerializer,
    BulkResponseSerializer,
    CleanupStalledResponseSerializer,
    JobDetailSerializer,
    JobEnqueueSerializer,
    JobEventListSerializer,
    JobEventQuerySerializer,
    JobEventSerializer,
    JobResultQuerySerializer,
    JobResultSerializer,
    JobSerializer,
    JobTypeSerializer,
    QueueSerializer,
)
from jobs.api.settings import JobAdminAPI
from jobs.api.throttling import ScopedRateThrottle, UserRateThrottle
from jobs.exceptions import JobError, TransitionNotAllowed
from jobs.filters import MAX_INT, JobFilter, UserIdFilter
from jobs.models import Job
from jobs.registry import UnknownJobType, all_job_types, get_job_type

logger = logging.getLogger(__name__)

# The owner filter's bounds in the schema: the engine's filters (jobs.filters) know no
# drf-spectacular, so the API annotates them here, where they meet the schema.
extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_INT})(UserIdFilter)


IDEMPOTENCY_HEADER = "Idempotency-Key"


def by_index(errors: Any) -> Any:
    """A bulk body's errors with the members' messages under their index, as the service's refusal
    has them: ``{"jobs": {"3": {...}}}`` (DRF lists every member, ``{}`` for the good ones)."""
    members = errors.get("jobs") if isinstance(errors, dict) else None
    if isinstance(members, list) and members and all(isinstance(item, dict) for item in members):
        return {**errors, "jobs": {str(index): item for index, item in enumerate(members) if item}}
    return errors


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (a structured-field string's quotes taken off), or
    None without one; a 400 for a key that is empty, too long or not visible ASCII."""
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= 255 or not all(" " <= char <= "~" for char in key):
        raise ValidationError({IDEMPOTENCY_HEADER: ["Must be 1-255 visible ASCII characters (a UUID will do)."]})
    return key


class EnqueueRateThrottle(UserRateThrottle):
    """Per user, stricter than the general rate (``DEFAULT_THROTTLE_RATES['enqueue']``)."""

    scope = "enqueue"


class ApiView(JobAdminAPI, StrictInputMixin):
    # Token first, so that an anonymous request gets 401 with `WWW-Authenticate: Token`;
    # session authentication (CSRF enforced) still works for the browser. JSON bodies only,
    # bounded in size and depth; unknown query parameters and body fields are a 400.
    authentication_classes: Sequence[type[BaseAuthentication]] = [TokenAuthentication, SessionAuthentication]
    permission_classes: Sequence[Any] = [SignedIn]
    parser_classes: Sequence[type[BaseParser]] = [BoundedJSONParser]


def _job_action(name: str, summary: str) -> Any:
    return extend_schema(
        summary=summary,
        request=None,
        responses={200: JobDetailSerializer, **errors(403, 404, 409)},
        operation_id=f"jobs_{name}",
    )


@extend_schema_view(
    list=extend_schema(
        summary="List jobs",
        description=(
            "Paginated with a capped count (exact up to 10,000, then `count_exact: false`). "
            "Users see their own jobs, staff see all.\n\n"
            "`params.<key>=<value>` (any number of them, each key once) keeps the jobs whose parameter "
            "`<key>` equals `<value>`; `<key>` is a name of letters, digits and `_` (not starting with a "
            "digit), or a dotted path to a nested one (`params.source.path`, at most 5 levels). `<value>` "
            "is compared as JSON when it reads as JSON (`params.items=5` is the number 5, "
            '`params.items="5"` the string, `true`, `null`, `[1, 2]`, `{"a": 1}`), else as the string it is '
            "(`params.mode=fast`). A bad key or value is a 400 naming the parameter."
        ),
        responses={200: JobSerializer(many=True), **errors(400)},
    ),
    retrieve=extend_schema(summary="A job in detail", responses={200: JobDetailSerializer, **errors(404)}),
)
class JobViewSet(ApiView, mixins.RetrieveModelMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    # Any segment reaches the view, so a malformed id is a JSON 404 like any unknown one.
    lookup_value_regex = "[^/]+"
    filterset_class = JobFilter
    pagination_class = CappedPageNumberPagination
    query_serializers = {"result": JobResultQuerySerializer, "events": JobEventQuerySerializer}
    body_actions = frozenset({"create", "bulk", "bulk_enqueue"})

    def get_queryset(self) -> Any:
        if self.action == "list":
            # No join: ``list`` reads the page's usernames in one query afterwards.
            return policy.visible_jobs(user=self.request.user)
        queryset = policy.visible_jobs(user=self.request.user).select_related("user")
        if self.action == "retrieve":
            queryset = queryset.select_related("result")
        return queryset

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset())) or []
        selectors.attach_owner_usernames(page)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def get_serializer_class(self) -> Any:
        if self.action == "list":
            return JobSerializer
        return JobDetailSerializer

    def get_throttles(self) -> builtins.list[Any]:  # `list` is the action in this class
        throttles = super().get_throttles()
        if self.action in ("create", "bulk_enqueue"):
            throttles.append(EnqueueRateThrottle())
        return throttles

    def filter_queryset(self, queryset: Any) -> Any:
        # Filters apply to the list only; actions look a job up by id among the visible ones.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    def get_object(self) -> Job:
        try:
            uuid.UUID(str(self.kwargs["pk"]))
        except ValueError:
            raise NotFound() from None
        return super().get_object()  # type: ignore[no-any-return]

    def _actionable(self) -> Job:
        job = self.get_object()
        if not policy.may_act_on_job(user=self.request.user, job=job):
            self.permission_denied(self.request, message=policy.ACT_ON_OTHERS)
        return job

    def _detail(self, job: Job) -> Response:
        return Response(JobDetailSerializer(job, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Enqueue a job",
        request=JobEnqueueSerializer,
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description=(
                    "Any text of 1-255 visible characters, new for each new request (a UUID). The same key "
                    "from the same user within 24 h answers with the job it queued (header "
                    "`Idempotent-Replayed: true`) instead of queuing again; with another request, 422."
                ),
            )
        ],
        responses={201: JobDetailSerializer, **errors(400, 403, 413, 422)},
        description="`params` is validated against the type's JSON Schema; field errors are nested under `params`.",
    )
    def create(self, request: Request) -> Response:
        serializer = JobEnqueueSerializer(data=request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        asked = {
            "job_type": data["type"],
            "params": data["params"],
            "queue": data.get("queue"),
            "priority": data.get("priority"),
            "actor": request.user,
        }
        outcome = services.job_enqueue_once(key=idempotency_key(request), user=request.user, **asked)
        response = Response(
            JobDetailSerializer(outcome.job, context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        summary="Enqueue many jobs at once",
        description=(
            "Queues every job of `jobs` in one transaction, or none: each is checked as `POST /api/jobs/` "
            "checks one (type, permission, priority, params, queue) before anything is written. A 400 names "
            'each bad member by its index: `{"jobs": {"3": {"params": {...}}}}`; a 403 names the '
            "first forbidden one. At most `JOBADMIN_BULK_ENQUEUE_MAX` jobs (10,000 by default). The "
            "`Idempotency-Key` header is refused here (a batch, `POST /api/batches/`, takes one)."
        ),
        request=BulkEnqueueSerializer,
        responses={201: BulkEnqueueResponseSerializer, **errors(400, 403, 413)},
    )
    @action(detail=False, methods=["post"], url_path="bulk-enqueue")
    def bulk_enqueue(self, request: Request) -> Response:
        if IDEMPOTENCY_HEADER in request.headers:
            raise ValidationError({IDEMPOTENCY_HEADER: ["Not taken by a bulk enqueue: send it without one."]})
        serializer = BulkEnqueueSerializer(data=request.data)
        if not serializer.is_valid():
            raise ValidationError(by_index(serializer.errors))
        jobs = services.jobs_enqueue_many(
            members=serializer.validated_data["jobs"], user=request.user, actor=request.user
        )
        return Response({"count": len(jobs), "ids": [str(job.pk) for job in jobs]}, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="A job's result",
        description="The result as JSON, or with `download=true` the result file itself as an attachment.",
        parameters=[JobResultQuerySerializer],
        responses={
            (200, "application/json"): JobResultSerializer,
            (200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The result file."),
            **errors(400, 404),
        },
    )
    @action(detail=True, methods=["get"])
    def result(self, request: Request, pk: Any = None) -> Any:
        query = JobResultQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        job = self.get_object()
        result = selectors.job_result(job=job)
        if result is None:
            raise NotFound("This job has no result (yet).")
        if not query.validated_data["download"]:
            return Response(JobResultSerializer(result, context=self.get_serializer_context()).data)
        if not result.file:
            raise NotFound("This job's result has no file.")
        try:
            handle = result.file.open("rb")
        except FileNotFoundError:
            raise NotFound("The result file is gone (purged or moved).") from None
        name = (result.file.name or "result").rsplit("/", 1)[-1]
        return FileResponse(handle, as_attachment=True, filename=name, content_type="application/octet-stream")

    @extend_schema(
        summary="A job's events",
        description=(
            "The job's timeline from the event log, oldest first. Read on with `after=<last_event_id>` "
            "while `has_more` is true."
        ),
        parameters=[JobEventQuerySerializer],
        responses={200: JobEventListSerializer, **errors(400, 404)},
    )
    @action(detail=True, methods=["get"])
    def events(self, request: Request, pk: Any = None) -> Response:
        query = JobEventQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        job = self.get_object()
        limit = query.validated_data["limit"]
        rows = list(selectors.job_events(job=job, after=query.validated_data.get("after"), limit=limit + 1))
        has_more = len(rows) > limit
        rows = rows[:limit]
        return Response(
            {
                "results": JobEventSerializer(rows, many=True, context=self.get_serializer_context()).data,
                "last_event_id": rows[-1].id if rows else None,
                "has_more": has_more,
            }
        )

    @_job_action("cancel", "Cancel a job (queued/paused at once, running at its next checkpoint)")
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: Any = None) -> Response:
        return self._detail(services.job_cancel(job=self._actionable(), actor=request.user))

    @_job_action("retry", "Retry a failed or cancelled job")
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: Any = None) -> Response:
        return self._detail(services.job_retry(job=self._actionable(), actor=request.user))

    @_job_action("pause", "Pause a running job at its next checkpoint")
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: Any = None) -> Response:
        return self._detail(services.job_pause(job=self._actionable(), actor=request.user))

    @_job_action("resume", "Resume a paused job")
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: Any = None) -> Response:
        return self._detail(services.job_resume(job=self._actionable(), actor=request.user))

    @extend_schema(
        summary="Apply one action to many jobs",
        description=(
            "An outcome per id, in the order given (duplicates once). Each job is changed in its own "
            "transaction: one job's refusal never undoes another's success, and no job is half-changed."
        ),
        request=BulkActionSerializer,
        responses={200: BulkResponseSerializer, **errors(400, 403, 413)},
    )
    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        serializer = BulkActionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        verb: str = serializer.validated_data["action"]
        ids = list(dict.fromkeys(serializer.validated_data["ids"]))
        service = services.JOB_ACTIONS[verb]
        jobs = policy.visible_jobs(user=request.user).in_bulk(ids)
        results = []
        for job_id in ids:
            job = jobs.get(job_id)
            if job is None:
                results.append({"id": job_id, "outcome": "not_found", "status": None, "detail": "No such job."})
                continue
            if not policy.may_act_on_job(user=request.user, job=job):
                results.append(
                    {"id": job_id, "outcome": "forbidden", "status": job.status, "detail": policy.ACT_ON_OTHERS}
                )
                continue
            try:
                job = service(job=job, actor=request.user)
            except TransitionNotAllowed as exc:
                results.append({"id": job_id, "outcome": "conflict", "status": exc.status, "detail": str(exc)})
            except (JobError, Job.DoesNotExist) as exc:
                results.append({"id": job_id, "outcome": "error", "status": job.status, "detail": str(exc)})
            except Exception:  # One job's unexpected failure must not lose the outcomes of the others.
                logger.exception("Bulk %s failed for job %s", verb, job_id)
                results.append({"id": job_id, "outcome": "error", "status": job.status, "detail": "Internal error."})
            else:
                results.append({"id": job_id, "outcome": "ok", "status": job.status, "detail": ""})
        return Response(BulkResponseSerializer({"action": verb, "results": results}).data)

    @extend_schema(
        summary="Clean up stalled jobs",
        description=(
            "Fails (or requeues, by the type's policy) every running or paused job whose heartbeat is older "
            "than the stall threshold. Needs `jobs.change_job`."
        ),
        request=None,
        responses={200: CleanupStalledResponseSerializer, **errors(403)},
    )
    @action(detail=False, methods=["post"], url_path="cleanup-stalled", permission_classes=[SignedIn, CanSweepJobs])
    def cleanup_stalled(self, request: Request) -> Response:
        outcomes = services.jobs_cleanup_stalled(actor=request.user)
        return Response(CleanupStalledResponseSerializer({"results": outcomes}).data)


@extend_schema_view(
    # filters=False: no queryset here for django-filter's schema to inspect (nor a filter).
    list=extend_schema(
        summary="Registered job types", responses={200: JobTypeSerializer(many=True), **errors()}, filters=False
    ),
    retrieve=extend_schema(summary="One job type", responses={200: JobTypeSerializer, **errors(404)}),
)
class JobTypeViewSet(ApiView, viewsets.ViewSet):
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    serializer_class = JobTypeSerializer

    def list(self, request: Request) -> Response:
        return Response(JobTypeSerializer(all_job_types(), many=True, context={"request": request}).data)

    def retrieve(self, request: Request, name: str | None = None) -> Response:
        try:
            jtype = get_job_type(name or "")
        except UnknownJobType:
            raise Http404 from None
        return Response(JobTypeSerializer(jtype, context={"request": request}).data)


@extend_schema_view(
    list=extend_schema(
        summary="Queues with depth and load", responses={200: QueueSerializer(many=True), **errors(403)}, filters=False
    ),
    retrieve=extend_schema(summary="One queue", responses={200: QueueSerializer, **errors(403, 404)}),
)
class QueueViewSet(ApiView, viewsets.ViewSet):
    permission_classes = [SignedIn, CanSeeQueues]
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    serializer_class = QueueSerializer

    def list(self, request: Request) -> Response:
        return Response(QueueSerializer(selectors.queue_overview(), many=True).data)

    def _one(self, name: str | None) -> dict[str, Any]:
        rows = selectors.queue_overview(name=name or "")
        if not rows:
            raise NotFound("No such queue.")
        return rows[0]

    def retrieve(self, request: Request, name: str | None = None) -> Response:
        return Response(QueueSerializer(self._one(name)).data)

    @extend_schema(
        summary="Pause a queue (queued jobs wait, running ones finish)",
        request=None,
        responses={200: QueueSerializer, **errors(403, 404, 409)},
    )
    @action(detail=True, methods=["post"], permission_classes=[SignedIn, CanPauseQueue])
    def pause(self, request: Request, name: str | None = None) -> Response:
        self._one(name)
        services.queue_pause(name=name or "", actor=request.user)
        return Response(QueueSerializer(self._one(name)).data)

    @extend_schema(summary="Resume a queue", request=None, responses={200: QueueSerializer, **errors(403, 404, 409)})
    @action(detail=True, methods=["post"], permission_classes=[SignedIn, CanPauseQueue])
    def resume(self, request: Request, name: str | None = None) -> Response:
        self._one(name)
        services.queue_resume(name=name or "", actor=request.user)
        return Response(QueueSerializer(self._one(name)).data)


class TokenView(JobAdminAPI, StrictInputMixin, ObtainAuthToken):
    """``POST username, password`` → ``{"token": ...}`` for ``Authorization: Token <token>``."""

    # Anyone may ask for a token: ObtainAuthToken's own choices, over JobAdminAPI's defaults.
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    renderer_classes = ObtainAuthToken.renderer_classes
    parser_classes = [BoundedJSONParser, FormParser, MultiPartParser]
    serializer_class = AuthTokenSerializer
    body_actions = frozenset({"post"})
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    @extend_schema(
        summary="Get an API token",
        request=AuthTokenSerializer,
        responses={200: AuthTokenResponseSerializer, **errors(400, 413, anonymous=True)},
        auth=[],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})

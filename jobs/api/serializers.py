from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from django.db import models
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.authtoken import serializers as authtoken_serializers
from rest_framework.fields import SkipField, empty
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import api_settings

from jobs import policy
from jobs.api.input import StrictSerializer
from jobs.api.json_schema import serializer_json_schema
from jobs.models import ACTION_NAMES, PRIORITY_MAX, PRIORITY_MIN, Job, JobEvent, JobResult, JobStatus
from jobs.registry import UnknownJobType, get_job_type

# Any JSON value, where the API passes on what a job or its type put there (params, a result,
# a checkpoint's cursor, an event's payload): a client generated from the schema gets a JSON type,
# not ``unknown``. ``JsonObject``'s values are ``JsonValue``s again, to any depth. Arrays in arrays
# are written out ``JSON_ARRAY_NESTING`` levels deep: neither openapi-typescript nor
# openapi-python-client resolves a union that holds arrays of itself (openapi-typescript#1603),
# so the recursion goes through ``JsonObject`` only (tests/test_openapi_typescript.py).
JSON_ARRAY_NESTING = 8
JSON_OBJECT_REF = {"$ref": "#/components/schemas/JsonObject"}


def _json_value(arrays: int) -> dict[str, Any]:
    """A JSON value: a scalar, an object, or (``arrays`` more levels allowed) an array of them."""
    branches: list[dict[str, Any]] = [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, JSON_OBJECT_REF]
    if arrays:
        branches.insert(3, {"type": "array", "items": _json_value(arrays - 1)})
    return {"nullable": True, "oneOf": branches}


JSON_COMPONENTS: dict[str, dict[str, Any]] = {
    "JsonValue": {
        "description": f"Any JSON value (arrays nest directly in arrays up to {JSON_ARRAY_NESTING} levels).",
        **_json_value(JSON_ARRAY_NESTING),
    },
    "JsonObject": {
        "type": "object",
        "description": "A JSON object: each name's value is any JSON value.",
        "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    },
}


class JsonValueField(serializers.JSONField):
    """Any JSON value: the ``JsonValue`` component (``_JsonValueSchema``). A ``JSONField`` like
    DRF's, so ``FastReadMixin`` passes its value through as it does DRF's."""

    json_component = "JsonValue"


class JsonObjectField(JsonValueField):
    """A JSON object whose values are any JSON: the ``JsonObject`` component."""

    json_component = "JsonObject"


class _JsonValueSchema(OpenApiSerializerFieldExtension):
    target_class = JsonValueField
    match_subclasses = True

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        for name, schema in JSON_COMPONENTS.items():
            component = ResolvedComponent(
                name=name, type=ResolvedComponent.SCHEMA, object=name, schema=copy.deepcopy(schema)
            )
            auto_schema.registry.register_on_missing(component)
        return {"$ref": f"#/components/schemas/{self.target.json_component}"}


class ParamsField(JsonObjectField):
    """A job's params: an object valid against its type's params JSON Schema."""


@extend_schema_field(serializers.ListField(child=serializers.CharField()))
class StepsField(serializers.JSONField):
    """A job's step names (``Job.steps``: its type's, and those the job named as it ran)."""


class CheckpointSerializer(serializers.Serializer):
    """Where a resumable job stopped (``jobs.context``; ``jobs.services.reports`` adds ``suspended``)."""

    step = serializers.IntegerField(min_value=0, help_text="The index of the step to continue in.")
    cursor = JsonValueField(help_text="What the job saved to continue from (the next item's index, or any JSON).")
    suspended = serializers.BooleanField(
        required=False, help_text="Present (true) once the job stopped there: paused, or suspended to continue."
    )


@extend_schema_field(CheckpointSerializer)
class CheckpointField(serializers.JSONField):
    """``Job.checkpoint``, documented as ``CheckpointSerializer``; the value is passed through."""


class JobResultSerializer(serializers.ModelSerializer):
    # ``data``, the model's JSONField, as a JsonValueField (a field named ``data`` would hide ``.data``).
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.JSONField: JsonValueField,
    }
    file = serializers.SerializerMethodField()

    class Meta:
        model = JobResult
        fields = ["data", "file", "created_at"]
        read_only_fields = fields
        extra_kwargs = {"data": {"help_text": "What the job returned: any JSON, or null."}}

    def get_file(self, obj: JobResult) -> str | None:
        if not obj.file:
            return None
        request = self.context.get("request")
        path = reverse("job-result", args=[obj.job_id]) + "?download=1"
        return request.build_absolute_uri(path) if request else path


# How FastReadMixin turns one kind of field's value into JSON, for the types the database
# hands back; any other value goes through the field's own ``to_representation``.
_RAW, _STR, _INT, _FLOAT, _BOOL, _DATETIME, _FIELD, _GENERIC = range(8)


class _Never:
    """A type no value has."""


# The value type each kind passes through unchanged (DRF's str(), int(), float(), bool()
# of a value of that very type is the value itself).
_AS_IS: dict[int, type] = {_STR: str, _INT: int, _FLOAT: float, _BOOL: bool, _DATETIME: _Never, _FIELD: _Never}


class FastReadMixin:
    """``to_representation`` without DRF's per-field machinery, same output.

    A list of 500 jobs is 16,000 field values. DRF resolves each through
    ``field.get_attribute`` (a generic dotted-path walk with exception handling),
    ``field.to_representation`` and, for every datetime, ``enforce_timezone`` with a
    fresh lookup of the current time zone: about 0.1 ms per row, most of a 500-row
    page. This reads each model attribute directly and converts by the field's class,
    once planned per serializer; anything it does not know for certain (dotted sources,
    method fields, other field classes, unexpected value types) takes DRF's own path.
    ``tests/jobs/test_api.py`` checks the output against DRF's field by field.
    """

    def _read_plan(self) -> list[tuple[str, str, int, Any]]:
        plan: list[tuple[str, str, int, Any]] | None = self.__dict__.get("_fast_read_plan")
        if plan is None:
            plan = [self._plan_field(field) for field in self._readable_fields]  # type: ignore[attr-defined]
            self.__dict__["_fast_read_plan"] = plan
        return plan

    def _plan_field(self, field: Any) -> tuple[str, str, int, Any]:
        name: str = field.field_name
        model = self.Meta.model  # type: ignore[attr-defined]
        attnames = {f.name: f.attname for f in model._meta.concrete_fields}
        source = field.source_attrs[0] if len(field.source_attrs) == 1 else None
        if isinstance(field, serializers.PrimaryKeyRelatedField):
            if source in attnames and field.use_pk_only_optimization() and field.pk_field is None:
                return name, attnames[source], _RAW, field
            return name, "", _GENERIC, field
        is_property = isinstance(getattr(model, source or "", None), property)
        if source is None or (source not in attnames and not is_property) or source != attnames.get(source, source):
            return name, "", _GENERIC, field
        kind = _FIELD
        if isinstance(field, serializers.JSONField) and not field.binary:
            kind = _RAW
        elif type(field) in (serializers.CharField, serializers.ChoiceField):
            kind = _STR
        elif type(field) is serializers.UUIDField and field.uuid_format == "hex_verbose":
            kind = _STR
        elif type(field) is serializers.IntegerField:
            kind = _INT
        elif type(field) is serializers.FloatField:
            kind = _FLOAT
        elif type(field) is serializers.BooleanField:
            kind = _BOOL
        elif (
            type(field) is serializers.DateTimeField
            and getattr(field, "format", empty) is empty
            and str(api_settings.DATETIME_FORMAT).lower() == "iso-8601"
            and not hasattr(field, "timezone")
        ):
            kind = _DATETIME
        return name, source, kind, field

    def to_representation(self, instance: Any) -> dict[str, Any]:
        zone = timezone.get_current_timezone()
        ret: dict[str, Any] = {}
        for name, attr, kind, field in self._read_plan():
            if kind == _GENERIC:
                try:
                    value = field.get_attribute(instance)
                except SkipField:
                    continue
                check = value.pk if isinstance(value, PKOnlyObject) else value
                ret[name] = None if check is None else field.to_representation(value)
                continue
            value = getattr(instance, attr)
            if value is None or kind == _RAW or type(value) is _AS_IS[kind]:
                ret[name] = value
            elif kind == _DATETIME and type(value) is datetime and value.tzinfo is not None:
                text = value.astimezone(zone).isoformat()
                ret[name] = text[:-6] + "Z" if text.endswith("+00:00") else text
            elif kind == _STR:
                ret[name] = str(value)
            else:
                ret[name] = field.to_representation(value)
        return ret


class OwnerUsernameField(serializers.CharField):
    """The owner's username: ``owner_username`` where the list set it for the whole page
    (``selectors.attach_owner_usernames``: one query, no user row per job), else
    ``job.user.username``."""

    def get_attribute(self, instance: Any) -> Any:
        try:
            return instance.__dict__["owner_username"]
        except (AttributeError, KeyError):
            return super().get_attribute(instance)


class JobSerializer(FastReadMixin, serializers.ModelSerializer):
    params = ParamsField(read_only=True)
    steps = StepsField(read_only=True)
    step_name = serializers.CharField(read_only=True)
    username = OwnerUsernameField(source="user.username", read_only=True, allow_null=True)
    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=ACTION_NAMES),
        source="allowed_actions",
        read_only=True,
        help_text="The actions the job's state allows now (`POST /api/jobs/{id}/<action>/`).",
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "type",
            "params",
            "status",
            "queue",
            "priority",
            "user",
            "username",
            "batch",
            "created_at",
            "started_at",
            "finished_at",
            "updated_at",
            "duration",
            "queue_wait",
            "progress",
            "current_step",
            "step_name",
            "steps",
            "total_items",
            "processed_items",
            "error_count",
            "eta",
            "attempts",
            "max_attempts",
            "timeout",
            "error",
            "heartbeat_at",
            "worker",
            "run_after",
            "cancel_requested",
            "pause_requested",
            "actions",
        ]
        read_only_fields = fields

    # Shown only to those who may see everyone's jobs (``policy.may_see_job_internals``); an
    # owner gets them empty: a traceback carries server paths, a worker name a host and pid.
    INTERNAL_FIELDS: tuple[str, ...] = ("worker",)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not self._internals_shown():
            for name in self.INTERNAL_FIELDS:
                if name in data:
                    data[name] = None if name == "worker" else ""
        return data

    def _internals_shown(self) -> bool:
        shown: bool | None = self.__dict__.get("_internals")  # once per serializer, not per row
        if shown is None:
            # Without a request the caller is the server itself (a task, a test), not a client.
            request = self.context.get("request")
            shown = self.__dict__["_internals"] = request is None or policy.may_see_job_internals(request.user)
        return shown


class JobDetailSerializer(JobSerializer):
    INTERNAL_FIELDS = ("worker", "traceback")

    result = serializers.SerializerMethodField()
    checkpoint = CheckpointField(
        read_only=True, allow_null=True, help_text="Where the job continues from; null: it starts afresh."
    )

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "traceback", "result", "checkpoint"]
        read_only_fields = fields

    @extend_schema_field(JobResultSerializer(allow_null=True))
    def get_result(self, obj: Job) -> dict[str, Any] | None:
        try:
            result = obj.result
        except JobResult.DoesNotExist:
            return None
        return JobResultSerializer(result, context=self.context).data


class StrictUUIDField(serializers.UUIDField):
    """Only a UUID string (DRF's field would also turn ``0`` or ``false`` into a UUID)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class JobEnqueueSerializer(StrictSerializer):
    type = serializers.CharField(max_length=100, help_text="A registered job type (see /api/job-types/).")
    params = ParamsField(
        required=False,
        allow_null=True,
        default=dict,
        help_text="An object valid against the type's params JSON Schema (null or absent: {}).",
    )
    queue = serializers.CharField(
        max_length=50, required=False, help_text="Defaults to the type's queue; must be a known queue."
    )
    priority = serializers.IntegerField(
        required=False,
        min_value=PRIORITY_MIN,
        max_value=PRIORITY_MAX,
        help_text="Higher runs first; defaults to the type's.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            jtype = get_job_type(attrs["type"])
        except UnknownJobType:
            raise serializers.ValidationError({"type": [f"Unknown job type {attrs['type']!r}."]}) from None
        request = self.context.get("request")
        if request is not None:  # refused before the params are read (``job_enqueue`` asks again)
            policy.require_may_run_job_type(user=request.user, job_type=jtype)
        try:
            attrs["params"] = jtype.validate_params(attrs.get("params"))
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"params": exc.detail}) from None
        return attrs


class BulkEnqueueMemberSerializer(StrictSerializer):
    """One job of a bulk enqueue: the fields of a single enqueue's body."""

    type = serializers.CharField(max_length=100, help_text="A registered job type (see /api/job-types/).")
    params = ParamsField(required=False, allow_null=True, help_text="As for POST /api/jobs/.")
    queue = serializers.CharField(max_length=50, required=False, help_text="Defaults to the type's queue.")
    priority = serializers.IntegerField(
        required=False, min_value=PRIORITY_MIN, max_value=PRIORITY_MAX, help_text="Defaults to the type's."
    )


class BulkEnqueueSerializer(StrictSerializer):
    jobs = BulkEnqueueMemberSerializer(
        many=True, allow_empty=False, help_text="The jobs, queued together or not at all (JOBADMIN_BULK_ENQUEUE_MAX)."
    )


class BulkEnqueueResponseSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="How many jobs were queued.")
    ids = serializers.ListField(child=serializers.UUIDField(), help_text="Their ids, in the order given.")


class JobEventActorSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="The user's id; null for the system.")
    name = serializers.CharField(help_text="Their username, or 'system'.")


class JobEventSerializer(serializers.ModelSerializer):
    event_id = serializers.IntegerField(source="id", read_only=True)
    actor = serializers.SerializerMethodField()
    payload = JsonObjectField(
        read_only=True, help_text="By kind: a job's `job` (its snapshot) and the kind's own fields (docs/live.md)."
    )

    class Meta:
        model = JobEvent
        fields = ["event_id", "kind", "job", "actor", "payload", "created_at"]

    @extend_schema_field(JobEventActorSerializer)
    def get_actor(self, obj: JobEvent) -> dict[str, Any]:
        return {"id": obj.actor_id, "name": obj.actor_label}

    def to_representation(self, instance: Any) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        request = self.context.get("request")
        snapshot = (data.get("payload") or {}).get("job")
        if request is not None and isinstance(snapshot, dict) and not policy.may_see_job_internals(request.user):
            data["payload"] = {**data["payload"], "job": {**snapshot, "worker": None}}
        return data


class TransitionErrorSerializer(serializers.Serializer):
    """The 409 body: the action refused and the current status of the job (or queue)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    action = serializers.CharField()
    status = serializers.CharField(help_text="The current status: a job status, or 'paused'/'active' for a queue.")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class CodedErrorSerializer(ErrorSerializer):
    code = serializers.CharField()


class JobEventListSerializer(serializers.Serializer):
    results = JobEventSerializer(many=True)
    last_event_id = serializers.IntegerField(
        allow_null=True, help_text="Pass as `after` to read on; null when the page is empty."
    )
    has_more = serializers.BooleanField()


class JobEventQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        required=False, min_value=0, max_value=2**63 - 1, help_text="Only events with a larger event_id."
    )
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=100)


class JobResultQuerySerializer(serializers.Serializer):
    download = serializers.BooleanField(
        required=False, default=False, help_text="Send the result file itself (404 if the result has no file)."
    )


BULK_ACTIONS = ACTION_NAMES
BULK_MAX_IDS = 500


class BulkActionSerializer(StrictSerializer):
    action = serializers.ChoiceField(choices=BULK_ACTIONS)
    ids = serializers.ListField(child=StrictUUIDField(), min_length=1, max_length=BULK_MAX_IDS)


class BulkOutcomeSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    outcome = serializers.ChoiceField(
        choices=["ok", "not_found", "forbidden", "conflict", "error"],
        help_text="ok: applied; not_found: no such job or not yours; forbidden: needs a permission; "
        "conflict: illegal in the job's current status; error: failed unexpectedly, nothing applied.",
    )
    status = serializers.CharField(allow_null=True, help_text="The job's status after the attempt (null if not found).")
    detail = serializers.CharField(allow_blank=True)


class BulkResponseSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=BULK_ACTIONS)
    results = BulkOutcomeSerializer(many=True)


class StalledOutcomeSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="job_id")
    status = serializers.ChoiceField(choices=JobStatus.choices)
    reason = serializers.CharField()


class CleanupStalledResponseSerializer(serializers.Serializer):
    results = StalledOutcomeSerializer(many=True)


@extend_schema_field(JsonObjectField)
class ParamsSchemaField(serializers.DictField):
    """A job type's params serializer, published as its JSON Schema."""

    def to_representation(self, value: Any) -> dict[str, Any]:
        return serializer_json_schema(value)


class JobTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    queue = serializers.CharField()
    steps = serializers.ListField(child=serializers.CharField())
    params_schema = ParamsSchemaField(source="params", help_text="JSON Schema of `params` for POST /api/jobs/.")
    timeout = serializers.IntegerField(help_text="Seconds one attempt may run.")
    max_attempts = serializers.IntegerField()
    priority = serializers.IntegerField()
    resumable = serializers.BooleanField(
        help_text="Continues from its checkpoints (pause, shutdown, stall); false: pausing it is refused."
    )
    permission = serializers.CharField(
        allow_null=True, help_text="What queuing it needs: a permission, 'staff', or null for any user."
    )
    may_run = serializers.SerializerMethodField(help_text="Whether the caller may queue this type.")

    def get_may_run(self, obj: Any) -> bool:
        request = self.context.get("request")
        return request is not None and policy.may_run_job_type(user=request.user, job_type=obj)


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    queued = serializers.IntegerField(help_text="Jobs waiting in the queue.")
    running = serializers.IntegerField(help_text="Jobs holding a slot (running or paused).")
    capacity = serializers.IntegerField(help_text="Concurrency limit across all workers.")
    utilisation = serializers.FloatField(help_text="running / capacity (0 to 1; above 1 if capacity was lowered).")
    paused = serializers.BooleanField()


class AuthTokenSerializer(StrictSerializer, authtoken_serializers.AuthTokenSerializer):
    """DRF's ``username`` and ``password``, and nothing else."""


class AuthTokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField()

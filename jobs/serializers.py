from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from jobs.models import Job, JobEvent, JobResult, JobStatus
from jobs.registry import UnknownJobType, get_job_type


class JobResultSerializer(serializers.ModelSerializer):
    file = serializers.SerializerMethodField()

    class Meta:
        model = JobResult
        fields = ["data", "file", "created_at"]

    def get_file(self, obj: JobResult) -> str | None:
        if not obj.file:
            return None
        request = self.context.get("request")
        path = f"/api/jobs/{obj.job_id}/result/?download=1"
        return request.build_absolute_uri(path) if request else path


class JobSerializer(serializers.ModelSerializer):
    step_name = serializers.CharField(read_only=True)

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
        ]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    result = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "traceback", "result"]
        read_only_fields = fields

    def get_result(self, obj: Job) -> dict[str, Any] | None:
        try:
            result = obj.result
        except JobResult.DoesNotExist:
            return None
        return JobResultSerializer(result, context=self.context).data


class JobEnqueueSerializer(serializers.Serializer):
    type = serializers.CharField()
    params = serializers.JSONField(required=False, default=dict)
    queue = serializers.ChoiceField(choices=[], required=False)
    priority = serializers.IntegerField(required=False, min_value=-100, max_value=100)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = list(settings.JOBADMIN_QUEUES)  # type: ignore[attr-defined]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        try:
            jtype = get_job_type(attrs["type"])
        except UnknownJobType:
            raise serializers.ValidationError({"type": [f"Unknown job type {attrs['type']!r}."]}) from None
        try:
            attrs["params"] = jtype.validate_params(attrs.get("params"))
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"params": exc.detail}) from None
        return attrs


class JobEventSerializer(serializers.ModelSerializer):
    event_id = serializers.IntegerField(source="id", read_only=True)
    actor = serializers.SerializerMethodField()

    class Meta:
        model = JobEvent
        fields = ["event_id", "kind", "job", "actor", "payload", "created_at"]

    def get_actor(self, obj: JobEvent) -> dict[str, Any]:
        return {"id": obj.actor_id, "name": obj.actor_label}


class TransitionErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()
    action = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)

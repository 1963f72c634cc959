"""Input and output serializers of the monitoring API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from monitoring.analytics import TREND_INTERVALS, TREND_METRICS
from monitoring.metrics import INTERVALS
from monitoring.models import Alert, AlertStatus
from monitoring.stats import RANGES


class RangeQuerySerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=list(RANGES), required=False)
    to = serializers.DateTimeField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword: declare the field by name.
        self.fields["from"] = serializers.DateTimeField(required=False)


class TrendQuerySerializer(RangeQuerySerializer):
    metric = serializers.ChoiceField(choices=list(TREND_METRICS), default="throughput")
    interval = serializers.ChoiceField(choices=list(TREND_INTERVALS), default="1h")


class MetricsQuerySerializer(RangeQuerySerializer):
    interval = serializers.ChoiceField(choices=list(INTERVALS), default="1m")


class AlertQuerySerializer(serializers.Serializer):
    status = serializers.MultipleChoiceField(choices=AlertStatus.choices, required=False)
    severity = serializers.ChoiceField(choices=["info", "warning", "critical"], required=False)
    rule = serializers.CharField(required=False)


class AlertSerializer(serializers.ModelSerializer):
    rule: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    job = serializers.UUIDField(source="job_id", read_only=True, allow_null=True)
    acknowledged_by: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)
    resolved_by: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "severity",
            "status",
            "subject",
            "job",
            "message",
            "value",
            "created_at",
            "updated_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "notifications",
        ]
        read_only_fields = fields

"""Input and output serializers of the monitoring API."""

from __future__ import annotations

from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.api.input import StrictSerializer
from jobs.models import JobStatus
from monitoring.analytics import GRADES, TREND_INTERVALS, TREND_METRICS
from monitoring.health import CHECKS as HEALTH_CHECKS
from monitoring.health import STATUSES as HEALTH_STATUSES
from monitoring.metrics import INTERVALS, SERIES_FIELDS
from monitoring.models import Alert, AlertRule, AlertStatus
from monitoring.stats import RANGES


class QuerySerializer(serializers.Serializer):
    """Query parameters. An empty value is not a value of its type: ``?to=`` is a 400, as in the jobs list
    (``jobs.filters.NON_EMPTY``), where DRF would otherwise take it for an absent parameter."""

    def to_internal_value(self, data: Any) -> Any:
        blank: dict[str, Any] = {
            str(name): ["This value may not be empty."]
            for name in self.fields
            if name in data and "" in (data.getlist(name) if hasattr(data, "getlist") else [data.get(name)])
        }
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)


class RangeQuerySerializer(QuerySerializer):
    range = serializers.ChoiceField(choices=list(RANGES), required=False)
    to = serializers.DateTimeField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # "from" is a Python keyword: declare the field by name.
        self.fields["from"] = serializers.DateTimeField(required=False)


class TrendQuerySerializer(RangeQuerySerializer):
    metric = serializers.ChoiceField(choices=list(TREND_METRICS), default="throughput")
    interval = serializers.ChoiceField(choices=list(TREND_INTERVALS), default="1h")


class TimeZoneField(serializers.CharField):
    """An IANA time zone name ("America/New_York"), as a ``ZoneInfo``."""

    def to_internal_value(self, data: Any) -> Any:
        name = super().to_internal_value(data)
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(
                f"Unknown time zone {name!r}: an IANA name such as 'Europe/Paris'."
            ) from None


class PeakHoursQuerySerializer(RangeQuerySerializer):
    tz = TimeZoneField(required=False, help_text="The zone of the hours (IANA name); default the server's TIME_ZONE.")


class MetricsQuerySerializer(RangeQuerySerializer):
    interval = serializers.ChoiceField(choices=list(INTERVALS), default="1m")


class AlertQuerySerializer(QuerySerializer):
    status = serializers.MultipleChoiceField(choices=AlertStatus.choices, required=False)
    severity = serializers.ChoiceField(choices=["info", "warning", "critical"], required=False)
    rule = serializers.SlugField(max_length=80, required=False, help_text="A rule's name (a slug).")


_POSTED = "'ok: HTTP 200 (attempt 1)', 'skipped: no URL', 'refused: …' or 'failed: …'; absent: not notified."


class AlertNotificationsSerializer(serializers.Serializer):
    """Per channel the rule notifies, how its notification went (``monitoring.alerts.alert_notify``)."""

    email = serializers.CharField(
        required=False, help_text="'sent', 'skipped: no recipients' or 'failed: …'; absent: not notified."
    )
    webhook = serializers.CharField(required=False, help_text=_POSTED)
    slack = serializers.CharField(required=False, help_text=_POSTED)


@extend_schema_field(AlertNotificationsSerializer)
class AlertNotificationsField(serializers.JSONField):
    """``Alert.notifications``, documented as ``AlertNotificationsSerializer``; the value is passed through."""


class AlertSerializer(serializers.ModelSerializer):
    notifications = AlertNotificationsField(read_only=True, help_text="Outcome per channel.")
    rule: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", read_only=True)
    job = serializers.UUIDField(source="job_id", read_only=True, allow_null=True)
    acknowledged_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    resolved_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

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


# The fields of an alert rule, as the admin's form edits them: every editable one (a channel added
# to the model, Slack's say, is in the API with its validation from the model's clean()).
ALERT_RULE_FIELDS = [
    f.name for f in AlertRule._meta.concrete_fields if f.editable and not f.primary_key and f.name != "builtin"
]


class AlertRuleSerializer(serializers.ModelSerializer):
    """An alert rule as ``GET /api/alert-rules/`` shows it."""

    channels = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = AlertRule
        fields = ["id", *ALERT_RULE_FIELDS, "builtin", "channels"]
        read_only_fields = fields


class AlertRuleInputSerializer(StrictSerializer, serializers.ModelSerializer):
    """The body of ``POST`` (every required field) and ``PATCH`` (any of them): an unknown field is a
    400. The model's own validation (a unique name, the webhook's SSRF fence) runs in
    ``monitoring.rules`` on the rule the change would make."""

    class Meta:
        model = AlertRule
        fields = ALERT_RULE_FIELDS
        # The name's uniqueness is checked by the model's full_clean (monitoring.rules), once.
        extra_kwargs: ClassVar[dict[str, Any]] = {"name": {"validators": []}}


# --- Output serializers: the bodies of the monitoring API, as the OpenAPI document shows them.
# The views answer through them, and ``live.messages`` derives the ``job-stats`` schema from
# ``StatsSerializer``, so the websocket and ``GET /api/stats/`` share one declared shape.


def _counts_by_status() -> dict[str, serializers.Field]:
    return {status: serializers.IntegerField(min_value=0) for status in JobStatus.values}


class WindowSerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=[*RANGES, "custom"], help_text="'custom' when from/to were given.")
    to = serializers.DateTimeField()

    def get_fields(self) -> dict[str, serializers.Field]:
        return {**super().get_fields(), "from": serializers.DateTimeField(allow_null=True, help_text="null: all")}


StatusCountsSerializer = type("StatusCountsSerializer", (serializers.Serializer,), _counts_by_status())


class FinishedCountsSerializer(serializers.Serializer):
    completed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    cancelled = serializers.IntegerField(min_value=0)


class DistributionSerializer(serializers.Serializer):
    count = serializers.IntegerField(min_value=0)
    mean = serializers.FloatField(allow_null=True, help_text="Seconds; null when count is 0.")
    p95 = serializers.FloatField(allow_null=True, help_text="Seconds, nearest rank; null when count is 0.")


class TodaySerializer(serializers.Serializer):
    total = serializers.IntegerField(min_value=0)
    completed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)


class DailySerializer(serializers.Serializer):
    date = serializers.DateField()
    completed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)


class HourlySerializer(serializers.Serializer):
    hour = serializers.DateTimeField()
    created = serializers.IntegerField(min_value=0)
    completed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)


class SystemSerializer(serializers.Serializer):
    cpu_percent = serializers.FloatField(allow_null=True)
    memory_percent = serializers.FloatField(allow_null=True)
    queue_size = serializers.IntegerField(min_value=0)
    sampled_at = serializers.DateTimeField(allow_null=True, help_text="null: measured by this request.")


class StatsSerializer(serializers.Serializer):
    """``GET /api/stats/``, also the ``stats`` of the ``job-stats`` websocket message."""

    window = WindowSerializer()
    generated_at = serializers.DateTimeField()
    counts = StatusCountsSerializer()
    total = serializers.IntegerField(min_value=0)
    active = serializers.IntegerField(min_value=0)
    finished = FinishedCountsSerializer()
    success_rate = serializers.FloatField(allow_null=True, help_text="Percent; null when nothing finished.")
    duration = DistributionSerializer()
    queue_wait = DistributionSerializer()
    throughput_per_hour = serializers.FloatField()
    today = TodaySerializer()
    daily = DailySerializer(many=True)
    hourly = HourlySerializer(many=True)
    system = SystemSerializer()


class LastFailureSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    error = serializers.CharField(allow_blank=True)
    finished_at = serializers.DateTimeField()


class TypeFiguresSerializer(serializers.Serializer):
    type = serializers.CharField()
    total = serializers.IntegerField(min_value=0)
    queued = serializers.IntegerField(min_value=0)
    active = serializers.IntegerField(min_value=0, help_text="Running and paused.")
    completed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    cancelled = serializers.IntegerField(min_value=0)
    success_rate = serializers.FloatField(allow_null=True)
    duration_mean = serializers.FloatField(allow_null=True)
    duration_p95 = serializers.FloatField(
        allow_null=True, help_text="Seconds; estimated within the duration histogram's bucket (as histogram_quantile)."
    )
    throughput_per_hour = serializers.FloatField(allow_null=True, help_text="Completed jobs per hour of the window.")
    items_per_second = serializers.FloatField(
        allow_null=True, help_text="Items processed per second of run time, of the jobs that finished in the window."
    )
    grade = serializers.ChoiceField(
        choices=list(GRADES), allow_null=True, help_text="docs/monitoring.md, Per-type health."
    )
    last_failure = LastFailureSerializer(allow_null=True)


class AnalyticsTypesSerializer(serializers.Serializer):
    window = WindowSerializer()
    results = TypeFiguresSerializer(many=True)


class UserFiguresSerializer(serializers.Serializer):
    user = serializers.IntegerField()
    username = serializers.CharField(allow_blank=True)
    total = serializers.IntegerField(min_value=0)
    completed = serializers.IntegerField(min_value=0)
    failed = serializers.IntegerField(min_value=0)
    success_rate = serializers.FloatField(allow_null=True)


class AnalyticsUsersSerializer(serializers.Serializer):
    window = WindowSerializer()
    results = UserFiguresSerializer(many=True)


class ErrorGroupSerializer(serializers.Serializer):
    message = serializers.CharField(allow_blank=True, help_text="The error's first 200 characters.")
    count = serializers.IntegerField(min_value=0)
    last_seen = serializers.DateTimeField(allow_null=True)
    types = serializers.ListField(child=serializers.CharField())


class RecentErrorSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    type = serializers.CharField()
    error = serializers.CharField(allow_blank=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    user = serializers.IntegerField(allow_null=True)


class AnalyticsErrorsSerializer(serializers.Serializer):
    window = WindowSerializer()
    total = serializers.IntegerField(min_value=0)
    groups = ErrorGroupSerializer(many=True)
    recent = RecentErrorSerializer(many=True)


class TrendPointSerializer(serializers.Serializer):
    time = serializers.DateTimeField()
    value = serializers.FloatField(allow_null=True)
    completed = serializers.IntegerField(required=False, help_text="throughput and success_rate")
    failed = serializers.IntegerField(required=False, help_text="success_rate")
    count = serializers.IntegerField(required=False, help_text="duration and queue_wait: jobs averaged")


class AnalyticsTrendsSerializer(serializers.Serializer):
    window = WindowSerializer()
    metric = serializers.ChoiceField(choices=list(TREND_METRICS))
    interval = serializers.ChoiceField(choices=list(TREND_INTERVALS))
    points = TrendPointSerializer(many=True)


class PeakHourSerializer(serializers.Serializer):
    hour = serializers.IntegerField(min_value=0, max_value=23)
    count = serializers.IntegerField(min_value=0)


class AnalyticsPeakHoursSerializer(serializers.Serializer):
    window = WindowSerializer()
    time_zone = serializers.CharField(help_text="The zone the hours are in (IANA name).")
    results = PeakHourSerializer(many=True)


MetricPointSerializer = type(
    "MetricPointSerializer",
    (serializers.Serializer,),
    {
        "time": serializers.DateTimeField(),
        "samples": serializers.IntegerField(min_value=0),
        **{name: serializers.FloatField(allow_null=True) for name in SERIES_FIELDS},
    },
)


class MetricsSeriesSerializer(serializers.Serializer):
    window = WindowSerializer()
    interval = serializers.ChoiceField(choices=list(INTERVALS))
    points = MetricPointSerializer(many=True)


class MonitorLeaderSerializer(serializers.Serializer):
    """The monitor that holds the lease (``jobadmin.singleton``)."""

    host = serializers.CharField(allow_null=True)
    pid = serializers.IntegerField(allow_null=True)
    lease_age_seconds = serializers.FloatField(
        allow_null=True, help_text="Seconds since the leader last renewed its lease."
    )
    leading_for_seconds = serializers.FloatField(allow_null=True)
    term = serializers.IntegerField(
        required=False, help_text="The lease's fencing term (PostgreSQL): one more with each new leader."
    )


class RedisMemorySerializer(serializers.Serializer):
    """What the broker's Redis says of its memory (``monitoring.health.redis_memory``)."""

    used_bytes = serializers.IntegerField()
    maxmemory_bytes = serializers.IntegerField(help_text="0: no limit")
    policy = serializers.CharField(help_text="maxmemory-policy: noeviction refuses writes, the others evict keys")
    evicted_keys = serializers.IntegerField(help_text="since Redis started")
    refused_out_of_memory = serializers.IntegerField(help_text="commands refused as OOM since Redis started")


class WorkerDatabaseErrorSerializer(serializers.Serializer):
    """A worker whose wake-up could not reach the database (``jobs.worker_reports``)."""

    worker = serializers.CharField()
    error = serializers.CharField()
    disk_full = serializers.BooleanField()
    seconds_ago = serializers.FloatField()


class HealthCheckSerializer(serializers.Serializer):
    """One check; the details beside ``status`` and ``reason`` depend on the check and are absent when it failed."""

    status = serializers.ChoiceField(choices=HEALTH_STATUSES)
    reason = serializers.CharField(allow_blank=True)
    # database
    vendor = serializers.CharField(required=False)
    latency_ms = serializers.FloatField(required=False)
    disk_full = serializers.BooleanField(required=False)
    connections = serializers.IntegerField(required=False, help_text="PostgreSQL: connections this role holds.")
    connection_limit = serializers.IntegerField(
        required=False, help_text="PostgreSQL: the most this role may hold (its limit, the database's, the server's)."
    )
    # broker
    broker = serializers.CharField(required=False)
    pending_wakeups = serializers.IntegerField(required=False)
    redis_memory = RedisMemorySerializer(required=False)
    # channel layer
    layer = serializers.CharField(required=False)
    # workers
    workers = serializers.IntegerField(required=False)
    clusters = serializers.IntegerField(required=False)
    capacity = serializers.IntegerField(required=False)
    other_key_workers = serializers.IntegerField(required=False)
    other_key_hosts = serializers.ListField(child=serializers.CharField(), required=False)
    database_errors = WorkerDatabaseErrorSerializer(many=True, required=False)
    refused_connections = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Processes the database refused a connection in the last 30 s (too many connections).",
    )
    database_unreachable = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Processes whose connection to the database failed or stopped answering in the last 30 s.",
    )
    # monitor
    last_seen_seconds = serializers.FloatField(required=False)
    leader = MonitorLeaderSerializer(required=False, allow_null=True)
    relay_lag_ms = serializers.FloatField(required=False, allow_null=True)
    # jobs
    failures = serializers.IntegerField(required=False)
    failures_window_seconds = serializers.IntegerField(required=False)
    active = serializers.IntegerField(required=False)
    long_running = serializers.IntegerField(required=False)


HealthChecksSerializer = type(
    "HealthChecksSerializer",
    (serializers.Serializer,),
    {name: HealthCheckSerializer() for name in HEALTH_CHECKS},
)


class HealthSerializer(serializers.Serializer):
    """The verdict; ``reasons`` and ``checks`` only for staff (anyone may ask for the verdict)."""

    status = serializers.ChoiceField(choices=HEALTH_STATUSES)
    checked_at = serializers.DateTimeField()
    reasons = serializers.ListField(child=serializers.CharField(), required=False)
    checks = HealthChecksSerializer(required=False)

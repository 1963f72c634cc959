"""Monitoring tables: the system metric time series, alert rules and the alerts they raise."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# The run-time histogram's bounds live with the engine (jobs.counters counts into them too).
from jobs.models import DURATION_BUCKETS as DURATION_BUCKETS


class MetricSample(models.Model):
    """One sample of the system, taken by the monitor loop every ``JOBADMIN_METRICS_INTERVAL`` seconds."""

    sampled_at = models.DateTimeField(default=timezone.now, db_index=True)
    cpu_percent = models.FloatField()
    memory_percent = models.FloatField()
    disk_percent = models.FloatField()
    load_1 = models.FloatField()
    load_5 = models.FloatField()
    load_15 = models.FloatField()
    queued_jobs = models.PositiveIntegerField(default=0)
    queue_depth = models.JSONField(default=dict, help_text="Queued jobs per queue.")
    running_jobs = models.PositiveIntegerField(default=0)
    live_workers = models.PositiveIntegerField(default=0)
    jobs_per_minute = models.FloatField(default=0, help_text="Jobs finished in the last minute.")
    failure_rate = models.FloatField(null=True, blank=True, help_text="Percent of jobs finished in 5 min that failed.")
    event_lag_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-sampled_at"]

    def __str__(self) -> str:
        return f"sample {self.sampled_at:%Y-%m-%d %H:%M:%S}"


class Metric(models.TextChoices):
    FAILURE_RATE = "failure_rate", "Failure rate (% of finished jobs in the window)"
    FAILURES = "failures", "Failed jobs in the window"
    STALLED_JOBS = "stalled_jobs", "Stalled jobs (per job, settled in the window)"
    LONG_RUNNING = "long_running", "Running time in seconds (per running job)"
    QUEUE_DEPTH = "queue_depth", "Queued jobs (per queue)"
    CPU_PERCENT = "cpu_percent", "CPU % (mean over the window)"
    MEMORY_PERCENT = "memory_percent", "Memory % (mean over the window)"
    DISK_PERCENT = "disk_percent", "Disk % (latest sample)"
    EVENT_LAG_MS = "event_lag_ms", "Event lag in ms (max over the window)"
    RUNNING_JOBS = "running_jobs", "Running jobs"


class Comparison(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", ">="
    LT = "lt", "<"
    LTE = "lte", "<="


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertRule(models.Model):
    name = models.SlugField(max_length=80, unique=True)
    description = models.CharField(max_length=300, blank=True)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    comparison = models.CharField(max_length=4, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField()
    window_seconds = models.PositiveIntegerField(default=300, help_text="How far back the metric looks.")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    enabled = models.BooleanField(default=True)
    notify_websocket = models.BooleanField(default=True, help_text="Send a job-alert to the alerts channel.")
    notify_email = models.BooleanField(default=False)
    email_recipients = models.TextField(blank=True, help_text="Comma-separated; empty means the ADMINS setting.")
    notify_webhook = models.BooleanField(default=False)
    webhook_url = models.URLField(blank=True)
    notify_slack = models.BooleanField(default=False, help_text="Post to a Slack channel (an incoming webhook).")
    slack_webhook_url = models.URLField(blank=True, help_text="The Slack app's incoming-webhook URL for the channel.")
    builtin = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """A webhook (Slack's too) may not point inside the network (``monitoring.webhooks``): a form error."""
        from django.core.exceptions import ValidationError

        from monitoring.webhooks import WebhookRefused, resolve_webhook

        problems = {}
        for field, on, what in (
            ("webhook_url", self.notify_webhook, "webhook"),
            ("slack_webhook_url", self.notify_slack, "Slack"),
        ):
            url = getattr(self, field)
            if url:
                try:
                    resolve_webhook(url)
                except WebhookRefused as exc:
                    problems[field] = str(exc)
            elif on:
                problems[field] = f"A rule that notifies by {what} needs its URL."
        if problems:
            raise ValidationError(problems)

    @property
    def channels(self) -> list[str]:
        return [
            name
            for name, on in (
                ("websocket", self.notify_websocket),
                ("email", self.notify_email),
                ("webhook", self.notify_webhook),
                ("slack", self.notify_slack),
            )
            if on
        ]


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


OPEN_STATUSES = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class Alert(models.Model):
    """One firing of a rule for one subject (a queue, a job, or "" for the whole system)."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    subject = models.CharField(max_length=200, blank=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    severity = models.CharField(max_length=16, choices=Severity.choices)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    message = models.CharField(max_length=500)
    value = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    notifications = models.JSONField(default=dict, blank=True, help_text="Outcome per channel.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=Q(status__in=["open", "acknowledged"]),
                name="one_open_alert_per_rule_subject",
            )
        ]
        indexes = [models.Index(fields=["status", "-created_at"], name="alert_status_created")]

    def __str__(self) -> str:
        return f"{self.rule.name} {self.subject}".strip()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


def duration_le_column(bound: float) -> str:
    """The ``JobStatsHour`` column counting jobs that ran at most ``bound`` seconds."""
    return "duration_le_" + f"{bound:g}".replace(".", "_")


class JobStatsHour(models.Model):
    """Pre-aggregated jobs by the hour they were *created* in (UTC), their type and current status.

    Maintained by the monitor (``monitoring.rollup``): an hour is recomputed from the raw rows
    whenever one of its jobs changes, so a bucket is always the exact aggregate of its hour as
    of the last fold; readers correct for what changed since (see ``rollup.cohort``).
    """

    hour = models.DateTimeField()
    type = models.CharField(max_length=100)
    status = models.CharField(max_length=16)
    jobs = models.PositiveIntegerField(default=0)
    duration_count = models.PositiveIntegerField(default=0)
    duration_sum = models.FloatField(default=0)
    queue_wait_count = models.PositiveIntegerField(default=0)
    queue_wait_sum = models.FloatField(default=0)
    # Cumulative histogram of the run time (Prometheus' buckets, see DURATION_BUCKETS): jobs with
    # duration <= the bound. Columns rather than a table: one bucket row carries the whole histogram.
    duration_le_0_1 = models.PositiveIntegerField(default=0)
    duration_le_0_5 = models.PositiveIntegerField(default=0)
    duration_le_1 = models.PositiveIntegerField(default=0)
    duration_le_5 = models.PositiveIntegerField(default=0)
    duration_le_10 = models.PositiveIntegerField(default=0)
    duration_le_30 = models.PositiveIntegerField(default=0)
    duration_le_60 = models.PositiveIntegerField(default=0)
    duration_le_300 = models.PositiveIntegerField(default=0)
    duration_le_600 = models.PositiveIntegerField(default=0)
    duration_le_1800 = models.PositiveIntegerField(default=0)
    duration_le_3600 = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "type", "status"], name="job_stats_hour_key")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h {self.type} {self.status}: {self.jobs}"


class RollupState(models.Model):
    """How far the fold has got: every job change before ``watermark`` is in the buckets."""

    name = models.CharField(max_length=50, primary_key=True)
    watermark = models.DateTimeField(null=True, blank=True)
    rebuilt_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.watermark}"


class JobStatsUserHour(models.Model):
    """Jobs by creation hour (UTC), owner and current status: the buckets of the top-users view."""

    hour = models.DateTimeField()
    user = models.IntegerField(help_text="The owner's id (jobs without an owner are not counted).")
    status = models.CharField(max_length=16)
    jobs = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "user", "status"], name="job_stats_user_hour_key")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h user {self.user} {self.status}: {self.jobs}"


class JobFinishMinute(models.Model):
    """Jobs by creation hour (the fold's unit) and the UTC minute they *finished* in: the trends' buckets."""

    hour = models.DateTimeField()
    minute = models.DateTimeField()
    finished_hour = models.DateTimeField(help_text="The UTC hour of minute: hourly and daily trends group by it.")
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    duration_count = models.PositiveIntegerField(default=0)
    duration_sum = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "minute"], name="job_finish_minute_key")]
        indexes = [models.Index(fields=["minute"], name="job_finish_minute")]

    def __str__(self) -> str:
        return f"finished {self.minute:%Y-%m-%d %H:%M} (created {self.hour:%H}h): {self.completed}/{self.failed}"


class JobStartMinute(models.Model):
    """Jobs by creation hour and the UTC minute they *started* in: the queue-wait trend's buckets."""

    hour = models.DateTimeField()
    minute = models.DateTimeField()
    started_hour = models.DateTimeField(help_text="The UTC hour of minute: hourly and daily trends group by it.")
    queue_wait_count = models.PositiveIntegerField(default=0)
    queue_wait_sum = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "minute"], name="job_start_minute_key")]
        indexes = [models.Index(fields=["minute"], name="job_start_minute")]

    def __str__(self) -> str:
        return f"started {self.minute:%Y-%m-%d %H:%M} (created {self.hour:%H}h): {self.queue_wait_count}"


class JobErrorHour(models.Model):
    """Failed jobs by creation hour, UTC hour of finishing, type and error (its first 200 characters)."""

    hour = models.DateTimeField()
    finished_hour = models.DateTimeField()
    type = models.CharField(max_length=100)
    message = models.TextField()
    jobs = models.PositiveIntegerField(default=0)
    last_seen = models.DateTimeField(help_text="The latest finished_at among them.")

    class Meta:
        indexes = [
            models.Index(fields=["hour"], name="job_error_hour"),
            models.Index(fields=["finished_hour"], name="job_error_finished"),
            models.Index(fields=["message"], name="job_error_message"),  # the types of the top groups
        ]

    def __str__(self) -> str:
        return f"{self.finished_hour:%Y-%m-%d %H}h {self.type}: {self.jobs} x {self.message[:40]}"

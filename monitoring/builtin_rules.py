"""The built-in alert rules of DESIGN.md ("Monitoring"); staff may edit or disable them.

Kept apart from the models so that the data migration (with its historical model) and the
tests (whose transactional flush empties the table) create them the same way.
"""

from typing import Any

BUILTIN_RULES = [
    ("failure-rate", "Failure rate over 10% in 15 minutes", "failure_rate", "gt", 10, 900, "warning"),
    ("failure-burst", "More than 2 failures in 5 minutes", "failures", "gt", 2, 300, "critical"),
    ("stalled-jobs", "A job stalled (its worker stopped sending heartbeats)", "stalled_jobs", "gt", 0, 900, "critical"),
    ("long-running", "A job has been running longer than 30 minutes", "long_running", "gt", 1800, 0, "warning"),
    ("queue-depth", "More than 50 jobs queued in one queue", "queue_depth", "gt", 50, 0, "warning"),
    ("cpu-high", "CPU over 80% (mean over 5 minutes)", "cpu_percent", "gt", 80, 300, "warning"),
    ("memory-high", "Memory over 90% (mean over 5 minutes)", "memory_percent", "gt", 90, 300, "critical"),
    ("event-lag", "Event lag over 500 ms (max over 1 minute)", "event_lag_ms", "gt", 500, 60, "warning"),
]


def ensure_builtin_rules(alert_rule_model: Any) -> None:
    """Create the built-in rules that do not exist (by name); existing ones are left as edited."""
    for name, description, metric, comparison, threshold, window, severity in BUILTIN_RULES:
        alert_rule_model.objects.get_or_create(
            name=name,
            defaults={
                "description": description,
                "metric": metric,
                "comparison": comparison,
                "threshold": threshold,
                "window_seconds": window,
                "severity": severity,
                "builtin": True,
                "notify_websocket": True,
            },
        )

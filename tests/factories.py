"""factory_boy factories, in one place."""

from __future__ import annotations

from typing import Any

import factory
from django.contrib.auth import get_user_model

from jobs.models import Job


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pw-secret-123")


class JobFactory(factory.django.DjangoModelFactory[Job]):
    """A job row in any state, written directly (tests of reads and of refused transitions).

    Transitions under test go through ``jobs.services``; this only sets the scene.
    """

    class Meta:
        model = Job

    type = "demo"
    params = factory.LazyFunction(lambda: {"items": 1, "delay_ms": 0, "fail_at": None})
    status = "queued"
    queue = "default"
    user = factory.SubFactory(UserFactory)
    steps = factory.LazyFunction(lambda: ["Prepare", "Process", "Summarise"])


def alert_payload(**overrides: Any) -> dict[str, Any]:
    """An alert as a ``job-alert`` message carries it (``monitoring.alerts.alert_payload``)."""
    return {
        "id": 1,
        "rule": "failure-burst",
        "severity": "critical",
        "message": "5 failures in 1 minute",
        "job": None,
        "subject": "",
        "value": 5.0,
        "status": "open",
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        **overrides,
    }

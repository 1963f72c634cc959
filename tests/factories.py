"""factory_boy factories, in one place."""

from __future__ import annotations

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

"""The job list's batch filter in the admin (``?batch=<id>``: the batch's members)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from jobs import services
from jobs.models import Job

pytestmark = pytest.mark.django_db

MEMBER = {"type": "demo", "params": {"items": 1, "delay_ms": 0}}


def test_the_job_list_filters_by_batch_and_offers_the_newest_batches(client: Any, superuser: Any) -> None:
    client.force_login(superuser)
    batch = services.batch_create(name="nightly crawl", members=[MEMBER, MEMBER], user=superuser)
    loose = services.job_enqueue(job_type="demo", params={"items": 1}, user=superuser)
    url = reverse("admin:jobs_job_changelist")

    filtered = client.get(url, {"batch": str(batch.pk)})
    assert filtered.status_code == 200
    shown = {str(job.pk) for job in filtered.context["cl"].result_list}
    assert shown == {str(pk) for pk in Job.objects.filter(batch=batch).values_list("id", flat=True)}
    assert str(loose.pk) not in shown
    assert f"#{batch.pk} nightly crawl" in filtered.content.decode()
    assert list(client.get(url, {"batch": "x"}).context["cl"].result_list) == []

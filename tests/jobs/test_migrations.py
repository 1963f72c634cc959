"""Data migrations, run backwards and forwards on the test database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_SLOTS = [("jobs", "0006_status_duration_index")]
SLOTS = [("jobs", "0007_queue_slots")]


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    yield executor
    # Back to the latest state for the tests that follow.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_queue_slots_are_created_for_every_queue_and_held_by_its_active_jobs(executor: Any) -> None:
    executor.migrate(BEFORE_SLOTS)
    old = executor.loader.project_state(BEFORE_SLOTS).apps
    old.get_model("jobs", "Queue").objects.update_or_create(name="high", defaults={"concurrency": 2})
    old.get_model("jobs", "Queue").objects.update_or_create(name="batch", defaults={"concurrency": 1})
    Job = old.get_model("jobs", "Job")
    running = Job.objects.create(type="demo", queue="high", status="running")
    paused = Job.objects.create(type="demo", queue="batch", status="paused")
    over_limit = Job.objects.create(type="demo", queue="batch", status="running")
    Job.objects.create(type="demo", queue="high", status="queued")
    Job.objects.create(type="demo", queue="high", status="completed")

    executor = MigrationExecutor(connection)
    executor.migrate(SLOTS)

    new = executor.loader.project_state(SLOTS).apps
    slots = {
        (s.queue, s.number): s.job_id
        for s in new.get_model("jobs", "QueueSlot").objects.filter(queue__in=["high", "batch"])
    }
    assert slots[("high", 0)] == running.pk
    assert slots[("high", 1)] is None
    assert len([k for k in slots if k[0] == "high"]) == 2
    # Two active jobs in a queue limited to one: both hold a slot, the second above the limit.
    assert {slots[("batch", 0)], slots[("batch", 1)]} == {paused.pk, over_limit.pk}
    assert len([k for k in slots if k[0] == "batch"]) == 2


AUTH = [("contenttypes", "0002_remove_content_type_name"), ("auth", "0012_alter_user_first_name_max_length")]
BEFORE_ACCESS = [("jobs", "0008_job_checkpoint")]
ACCESS = [("jobs", "0009_access_permissions")]


def test_holders_of_the_retired_manage_others_jobs_get_view_job_and_change_job(executor: Any) -> None:
    executor.migrate(BEFORE_ACCESS)
    old = executor.loader.project_state(BEFORE_ACCESS + AUTH).apps
    ContentType = old.get_model("contenttypes", "ContentType")
    Permission = old.get_model("auth", "Permission")
    content_type, _ = ContentType.objects.get_or_create(app_label="jobs", model="job")
    retired, _ = Permission.objects.get_or_create(
        content_type=content_type, codename="manage_others_jobs", defaults={"name": "old"}
    )
    holder = old.get_model("auth", "User").objects.create(username="holder")
    holder.user_permissions.add(retired)
    team = old.get_model("auth", "Group").objects.create(name="operators")
    team.permissions.add(retired)
    bystander = old.get_model("auth", "User").objects.create(username="bystander")

    executor = MigrationExecutor(connection)
    executor.migrate(ACCESS)

    new = executor.loader.project_state(ACCESS + AUTH).apps
    User, Group = new.get_model("auth", "User"), new.get_model("auth", "Group")
    codenames = set(User.objects.get(pk=holder.pk).user_permissions.values_list("codename", flat=True))
    assert codenames == {"view_job", "change_job"}
    assert set(Group.objects.get(pk=team.pk).permissions.values_list("codename", flat=True)) == codenames
    assert not User.objects.get(pk=bystander.pk).user_permissions.exists()
    assert not new.get_model("auth", "Permission").objects.filter(codename="manage_others_jobs").exists()
    assert new.get_model("auth", "Permission").objects.filter(codename="purge_history").exists()

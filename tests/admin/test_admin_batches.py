"""The job list's batch filter in the admin (``?batch=<id>``: the batch's members)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from jobs import services
from jobs.models import EventKind, Job, JobEvent, JobStatus

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


# --- the batch admin: the list, the batch page, cancel and retry-failed --------------------------
WORKER = "test-host:1"


def _members(batch: Any) -> list[Job]:
    return list(batch.members.order_by("created_at", "id"))


def _fail(job: Job) -> None:
    claimed = services.job_claim(queue=job.queue, worker=WORKER)
    assert claimed is not None
    assert claimed.pk == job.pk
    services.job_fail(job_id=claimed.pk, worker=WORKER, attempt=claimed.attempts, error="boom", retry=False)


def _act(client: Any, batch: Any, action: str) -> Any:
    return client.post(reverse("admin:jobs_batch_act", args=[batch.pk, action]), follow=True)


def _said(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_batch_list_shows_status_counts_progress_creation_and_creator(client: Any, superuser: Any) -> None:
    client.force_login(superuser)
    batch = services.batch_create(name="nightly crawl", members=[MEMBER] * 3, user=superuser)
    services.job_cancel(job=_members(batch)[0], actor=superuser)
    response = client.get(reverse("admin:jobs_batch_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "nightly crawl" in page
    assert "2 queued · 1 cancelled" in page
    assert 'aria-valuenow="33"' in page  # one of three finished
    assert "ja-status-running" in page
    assert f"{reverse('admin:jobs_job_changelist')}?batch={batch.pk}" in page
    assert f'<time datetime="{batch.created_at.isoformat()}' in page
    assert " UTC</time>" in page
    assert superuser.username in page


def test_the_list_reads_every_batchs_aggregate_in_one_query(
    client: Any, superuser: Any, django_assert_max_num_queries: Any
) -> None:
    client.force_login(superuser)
    for name in ("a", "b"):
        services.batch_create(name=name, members=[MEMBER], user=superuser)
    with django_assert_max_num_queries(12) as few:
        client.get(reverse("admin:jobs_batch_changelist"))
    for name in [f"c{i}" for i in range(8)]:
        services.batch_create(name=name, members=[MEMBER], user=superuser)
    with django_assert_max_num_queries(len(few.captured_queries)):  # ten batches cost what two did
        client.get(reverse("admin:jobs_batch_changelist"))


def test_the_batch_page_shows_its_members_linked_counts_progress_and_the_live_channel(
    client: Any, superuser: Any
) -> None:
    client.force_login(superuser)
    batch = services.batch_create(name="crawl", members=[MEMBER] * 2, user=superuser)
    response = client.get(reverse("admin:jobs_batch_change", args=[batch.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    for job in _members(batch):
        assert reverse("admin:jobs_job_change", args=[job.pk]) in page
        assert f'data-member-id="{job.pk}"' in page
    assert f'data-batch-id="{batch.pk}"' in page
    assert "jobadmin/admin/batchpage.js" in page
    assert "jobadmin/admin/time.js" in page
    assert '<strong data-count="queued">2</strong>' in page
    assert f"?batch={batch.pk}" in page
    assert 'data-batch-action="cancel"' in page


def test_a_view_only_viewer_sees_the_batch_but_no_action_and_cannot_post_one(client: Any, user: Any) -> None:
    from tests.conftest import grant

    viewer = grant(type(user).objects.create(username="viewer", is_staff=True), "jobs.view_job")
    batch = services.batch_create(name="crawl", members=[MEMBER] * 2, user=user)
    client.force_login(viewer)
    listing = client.get(reverse("admin:jobs_batch_changelist"))
    assert listing.status_code == 200
    assert "cancel_batches" not in listing.content.decode()
    page = client.get(reverse("admin:jobs_batch_change", args=[batch.pk]))
    assert page.status_code == 200
    assert "data-batch-action" not in page.content.decode()
    refused = client.post(reverse("admin:jobs_batch_act", args=[batch.pk, "cancel"]))
    assert refused.status_code == 403
    assert {job.status for job in _members(batch)} == {JobStatus.QUEUED}


def test_staff_without_view_job_are_refused_the_batch_admin(client: Any, bare_staff: Any, user: Any) -> None:
    batch = services.batch_create(name="crawl", members=[MEMBER], user=user)
    client.force_login(bare_staff)
    assert client.get(reverse("admin:jobs_batch_changelist")).status_code == 403
    assert client.get(reverse("admin:jobs_batch_change", args=[batch.pk])).status_code == 403
    assert client.post(reverse("admin:jobs_batch_act", args=[batch.pk, "cancel"])).status_code == 403


def test_cancel_on_the_batch_page_cancels_the_members_records_the_actor_and_a_second_is_refused(
    client: Any, staff_user: Any, user: Any
) -> None:
    batch = services.batch_create(name="crawl", members=[MEMBER] * 2, user=user)
    client.force_login(staff_user)
    done = _act(client, batch, "cancel")
    assert done.status_code == 200
    assert any("cancelled its unfinished members" in text for text in _said(done))
    assert {job.status for job in _members(batch)} == {JobStatus.CANCELLED}
    assert JobEvent.objects.get(kind=EventKind.BATCH_CANCELLED).actor_id == staff_user.pk
    again = _act(client, batch, "cancel")
    assert any("refused — No member of this batch is left to cancel." in text for text in _said(again))
    assert JobEvent.objects.filter(kind=EventKind.BATCH_CANCELLED).count() == 1


def test_retry_failed_queues_the_failed_members_and_is_refused_when_none_failed(
    client: Any, staff_user: Any, user: Any
) -> None:
    batch = services.batch_create(name="crawl", members=[MEMBER] * 2, user=user)
    client.force_login(staff_user)
    refused = _act(client, batch, "retry")
    assert any("refused — No member of this batch failed." in text for text in _said(refused))
    first, second = _members(batch)
    _fail(first)
    done = _act(client, batch, "retry")
    assert any("queued its failed members again" in text for text in _said(done))
    assert [job.status for job in _members(batch)] == [JobStatus.QUEUED, JobStatus.QUEUED]
    assert JobEvent.objects.get(kind=EventKind.BATCH_RETRIED).actor_id == staff_user.pk


def test_the_lists_actions_act_on_each_selected_batch_and_name_the_refused_ones(
    client: Any, staff_user: Any, user: Any
) -> None:
    live = services.batch_create(name="live", members=[MEMBER], user=user)
    over = services.batch_create(name="over", members=[MEMBER], user=user)
    services.batch_cancel(batch=over, actor=user)
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:jobs_batch_changelist"),
        {"action": "cancel_batches", "_selected_action": [live.pk, over.pk]},
        follow=True,
    )
    assert _said(response) == [
        "Cancel: 2 batches — 1 cancelled its unfinished members (live); 1 refused — No member of this batch"
        " is left to cancel (over)."
    ]
    assert {job.status for job in _members(live)} == {JobStatus.CANCELLED}


def test_an_unknown_action_is_a_404_and_a_get_is_refused(client: Any, superuser: Any) -> None:
    batch = services.batch_create(name="crawl", members=[MEMBER], user=superuser)
    client.force_login(superuser)
    assert client.post(reverse("admin:jobs_batch_act", args=[batch.pk, "explode"])).status_code == 404
    assert client.get(reverse("admin:jobs_batch_act", args=[batch.pk, "cancel"])).status_code == 405


def test_the_admin_names_them_batches(client: Any, superuser: Any) -> None:
    client.force_login(superuser)
    index = client.get(reverse("admin:index")).content.decode()
    assert ">Batches<" in index
    assert "Batchs" not in index

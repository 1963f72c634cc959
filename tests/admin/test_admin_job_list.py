"""The admin job list's search box (the API's search), its "Past hour" range and its page-size choice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.admin.job_list import CreatedFilter
from jobs.models import Job
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:jobs_job_changelist"


@pytest.fixture
def staff_client(client: Any, superuser: Any) -> Any:
    client.force_login(superuser)
    return client


def shown(staff_client: Any, **query: Any) -> set[Job]:
    response = staff_client.get(reverse(CHANGELIST), query)
    assert response.status_code == 200, response
    return set(response.context["cl"].result_list)


def test_the_search_box_finds_an_id_middle_type_creator_param_value_and_error(staff_client: Any) -> None:
    dora = UserFactory(username="dora-explorer")
    by_dora = JobFactory.create(user=dora, type="demo")
    export = JobFactory.create(user=None, type="export-jobs", params={"source": "s3://bucket/Ledger-2026.csv"})
    failed = JobFactory.create(user=None, type="demo", status="failed", error="KeyError: 'customer_id'")

    assert shown(staff_client, q=str(export.pk)[14:28]) == {export}
    assert shown(staff_client, q="PORT-JO") == {export}
    assert shown(staff_client, q="explor") == {by_dora}
    assert shown(staff_client, q="ledger-2026") == {export}
    assert shown(staff_client, q="customer_ID") == {failed}
    assert shown(staff_client, q="no-such-text") == set()


def test_the_search_box_is_labelled_in_words_and_keeps_the_filters_it_searches_within(staff_client: Any) -> None:
    JobFactory.create(type="demo", status="failed")
    JobFactory.create(type="demo", status="completed")
    page = staff_client.get(reverse(CHANGELIST), {"status__exact": "failed", "q": "demo"}).content.decode()
    label = page[page.index('<label for="searchbar"') : page.index("</label>", page.index('<label for="searchbar"'))]
    assert 'alt=""' in label  # the icon is decoration
    assert label.endswith("Search jobs")  # the label a screen reader and a sighted user share
    assert 'type="search"' in page
    assert 'aria-describedby="searchbar_helptext"' in page
    assert '<input type="hidden" name="status__exact" value="failed">' in page
    assert "1 result (" in page  # of the 2 jobs


def test_past_hour_keeps_the_jobs_created_in_the_last_hour(staff_client: Any) -> None:
    recent = JobFactory.create(user=None, created_at=timezone.now() - timedelta(minutes=59))
    JobFactory.create(user=None, created_at=timezone.now() - timedelta(minutes=61))

    response = staff_client.get(reverse(CHANGELIST))
    assert "?created_at__past=1h" in response.content.decode()
    assert shown(staff_client, created_at__past="1h") == {recent}


def test_past_hour_is_shown_selected_and_a_value_not_offered_is_refused(staff_client: Any) -> None:
    response = staff_client.get(reverse(CHANGELIST), {"created_at__past": "1h"})
    created = next(spec for spec in response.context["cl"].filter_specs if isinstance(spec, CreatedFilter))
    selected = [choice["display"] for choice in created.choices(response.context["cl"]) if choice["selected"]]
    assert selected == ["Past hour"]

    response = staff_client.get(reverse(CHANGELIST), {"created_at__past": "3h"})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize("size", [50, 100, 200, 500])
def test_the_page_size_choice_sets_the_rows_per_page(staff_client: Any, size: int) -> None:
    response = staff_client.get(reverse(CHANGELIST), {"per_page": size})
    assert response.context["cl"].list_per_page == size
    assert f'<strong aria-current="true">{size}</strong>' in response.content.decode()


def test_a_page_holds_as_many_rows_as_chosen_and_the_links_keep_the_filters(staff_client: Any) -> None:
    JobFactory.create_batch(51, user=None, type="demo")
    assert len(shown(staff_client)) == 50
    assert len(shown(staff_client, per_page=100)) == 51

    body = staff_client.get(reverse(CHANGELIST), {"type": "demo", "p": 2}).content.decode()
    assert "?per_page=200&amp;type=demo" in body  # back to the first page, the filter kept


@pytest.mark.parametrize("size", ["7", "abc", "5000"])
def test_a_page_size_not_offered_is_refused_like_a_bad_filter(staff_client: Any, size: str) -> None:
    response = staff_client.get(reverse(CHANGELIST), {"per_page": size})
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")

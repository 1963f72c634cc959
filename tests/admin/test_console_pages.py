"""`/` in the standalone project (each kind of user where they belong), the navigation sidebar, and the
monitor's alerts by permission."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from jobs import policy
from tests.conftest import grant
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _landing(user: Any) -> str:
    client = Client()
    if user is not None:
        client.force_login(user)
    response = client.get("/")
    assert response.status_code == 302
    return str(response["Location"])


def test_anonymous_goes_to_the_login_and_back() -> None:
    assert _landing(None) == "/admin/login/?next=/"


def test_who_sees_every_job_goes_to_the_live_monitor() -> None:
    assert _landing(grant(UserFactory.create(is_staff=True), policy.VIEW_JOBS)) == "/admin/monitor/"
    assert _landing(UserFactory.create(is_staff=True, is_superuser=True)) == "/admin/monitor/"


def test_a_user_and_staff_without_view_job_go_to_their_own_jobs() -> None:
    assert _landing(UserFactory.create()) == "/api/jobs/"
    assert _landing(UserFactory.create(is_staff=True)) == "/api/jobs/"


def test_the_admins_view_site_link_is_the_landing_page() -> None:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    page = client.get("/admin/").content.decode()
    assert 'href="/"' in page  # "View site"


def test_the_navigation_sidebar_links_the_monitor_and_analytics_on_every_admin_page() -> None:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    for path in ("/admin/jobs/job/", "/admin/monitoring/alertrule/"):
        page = client.get(path).content.decode()
        sidebar = page[page.index('id="nav-sidebar"') :]
        sidebar = sidebar[: sidebar.index("</nav>")]
        assert 'href="/admin/monitor/"' in sidebar, path
        assert 'href="/admin/analytics/"' in sidebar, path


def test_the_monitor_renders_the_open_alerts_and_the_actions_by_permission() -> None:
    from monitoring.builtin_rules import ensure_builtin_rules
    from monitoring.models import Alert, AlertRule, AlertStatus

    ensure_builtin_rules(AlertRule)
    rule = AlertRule.objects.get(name="failure-burst")
    shown = Alert.objects.create(rule=rule, severity=rule.severity, message="open one")
    Alert.objects.create(rule=rule, subject="x", severity=rule.severity, message="gone", status=AlertStatus.RESOLVED)

    def monitor(*perms: str) -> Any:
        client = Client()
        client.force_login(grant(UserFactory.create(is_staff=True), policy.VIEW_JOBS, *perms))
        return client.get("/admin/monitor/")

    jobs_only = monitor()
    assert jobs_only.status_code == 200
    assert jobs_only.context["alerts_initial"] == []  # alerts need monitoring.view_alert
    assert "data-open-alerts" not in jobs_only.content.decode()
    viewer = monitor(policy.VIEW_ALERT)
    assert [a["id"] for a in viewer.context["alerts_initial"]] == [shown.pk]  # open ones only
    assert 'data-may-change-alerts="0"' in viewer.content.decode()
    changer = monitor(policy.CHANGE_ALERT)
    assert 'data-may-change-alerts="1"' in changer.content.decode()
    assert "/api/alerts/0/acknowledge/" in changer.content.decode()


def _finished(job_type: str, *, failed: int, completed: int, items: int | None = None) -> None:
    """Jobs of ``job_type`` that finished a minute ago after 10 s, ``items`` items each."""
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import JobStatus
    from tests.factories import JobFactory

    started = timezone.now() - timedelta(minutes=1)
    for status, n in ((JobStatus.FAILED, failed), (JobStatus.COMPLETED, completed)):
        JobFactory.create_batch(
            n,
            type=job_type,
            status=status,
            created_at=started,
            started_at=started,
            finished_at=started + timedelta(seconds=10),
            duration=10.0,
            total_items=items,
            processed_items=items or 0,
        )


def test_the_monitor_renders_each_types_grade_over_its_grade_range_beside_the_jobs() -> None:
    from console.views import MONITOR_GRADE_RANGE

    _finished("import-csv", failed=1, completed=4)  # 20 % errors
    _finished("resize-images", failed=0, completed=3, items=1000)  # 100 items a second
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    response = client.get("/admin/monitor/")
    assert response.context["type_grades"] == {"import-csv": "poor", "resize-images": "excellent"}
    page = response.content.decode()
    assert 'id="ja-type-grades"' in page
    assert f'data-grades-url="/api/analytics/types/?range={MONITOR_GRADE_RANGE}"' in page
    assert '<th scope="col" class="ja-col-grade">Type health</th>' in page


def test_the_analytics_page_states_the_grading_rule_the_api_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client()
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))
    page = client.get("/admin/analytics/").content.decode()
    assert "<strong>excellent</strong> at most 1 % errors and at least 50 items a second" in page
    assert "<strong>fair</strong> at most 10 % errors;" in page  # no items clause for a bound of 0
    assert page.count('data-sort-key="') == 8
    # The words come from the rule itself: change the rule, the page follows.
    monkeypatch.setattr("console.views.GRADE_RULES", (("excellent", 2, 60), ("good", 5, 10), ("fair", 10, 0)))
    page = client.get("/admin/analytics/").content.decode()
    assert "<strong>excellent</strong> at most 2 % errors and at least 60 items a second" in page

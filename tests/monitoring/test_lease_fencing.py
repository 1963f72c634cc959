"""The monitor's lease row fences a deposed leader (issue 21, item 2; ``jobadmin.singleton``).

Two ``Lease`` objects in this process stand for two monitors on two hosts, on the real
PostgreSQL test database: the first leads, its lease runs out (as when its renewals no
longer reach the database), the second takes over with the next term, and what a duty of
the first still writes is rolled back.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction

from jobadmin.singleton import Deposed, Lease
from monitoring.health import monitor_leader
from tests.conftest import REQUIRE_SERVICES

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def leases() -> Iterator[list[Lease]]:
    if connection.vendor != "postgresql":
        if REQUIRE_SERVICES:
            pytest.fail("PostgreSQL is required in this run")
        pytest.skip("the lease row is PostgreSQL's (CI sets DATABASE_URL)")
    made: list[Lease] = []
    yield made
    for lease in made:
        lease.release()


def monitor(leases: list[Lease], host: str) -> Lease:
    lease = Lease(lease=30, log=io.StringIO(), holder=f"{host} 4242")
    leases.append(lease)
    return lease


def run_out(term: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE monitoring_monitorlease SET expires_at = clock_timestamp() - interval '1 second' WHERE term = %s",
            [term],
        )


def test_a_standby_takes_the_lease_only_once_it_ran_out_and_the_deposed_leaders_writes_are_rolled_back(
    leases: list[Lease],
) -> None:
    first, second = monitor(leases, "one"), monitor(leases, "two")
    assert first.acquire(wait=lambda: True)
    assert not second._try_postgresql()  # the lease holds: the standby waits
    assert (monitor_leader() or {}).get("host") == "one"

    run_out(first.term)
    assert monitor_leader() is None  # ran out on the database's clock: nobody leads
    assert second.acquire(wait=lambda: True)
    assert second.term == first.term + 1
    assert (monitor_leader() or {}).get("host") == "two"

    # A duty the first leader was still running when it was deposed commits nothing.
    def late_duty() -> None:
        with transaction.atomic():
            Group.objects.create(name="written by the deposed leader")
            first.fence()

    with pytest.raises(Deposed):
        late_duty()
    assert not Group.objects.filter(name="written by the deposed leader").exists()
    assert not first.sure()
    # The new leader's duty commits.
    with transaction.atomic():
        Group.objects.create(name="written by the leader")
        second.fence()
    assert Group.objects.filter(name="written by the leader").exists()
    # The deposed leader's renewal is refused too: it cannot take the lease back by renewing.
    assert not first._renew()


def test_a_leader_that_stops_gives_the_lease_back_and_a_standby_takes_it_at_once(leases: list[Lease]) -> None:
    first, second = monitor(leases, "one"), monitor(leases, "two")
    assert first.acquire(wait=lambda: True)
    first.release()
    assert monitor_leader() is None
    assert second._try_postgresql()
    assert second.term == first.term + 1

"""A socket's catch-up read rides out a database outage (issue 14, item 7).

About 1 s and 4 s after a subscription the consumer reads the log again for what the live
path missed (docs/websocket.md, "Delivery guarantees"). A read that met a database outage
raised inside that task, which died unnoticed: the events only the catch-up would have
brought never came, not even after the database was back.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from django.db import connection

from live.consumers import CATCH_UP_AFTER
from tests.live.test_consumers import connect, make_job, progress, receive, run, send

pytestmark = pytest.mark.django_db(transaction=True)


def database_down(admin: Any) -> None:
    """This run's database refuses connections, and every session it had is ended, this
    test's own too (unlike ``DatabaseBlock``): the consumer's reads run on it."""
    name = connection.settings_dict["NAME"]
    admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])


def database_up(admin: Any) -> None:
    admin.execute(f'ALTER DATABASE "{connection.settings_dict["NAME"]}" ALLOW_CONNECTIONS true')


def test_a_catch_up_that_meets_a_database_outage_delivers_once_the_database_is_back(
    pg_admin: Any, user: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # No relay runs: an event reaches the socket only through its catch-up read, as one the
    # channel layer dropped would.
    settings.JOBADMIN_RELAY_IN_WEB = False

    async def scenario() -> None:
        job = await make_job(user)
        communicator = await connect(user, relay=False)
        await send(communicator, type="subscribe", channel=f"job:{job.pk}")
        assert (await receive(communicator))["type"] == "subscribed"
        missed = await progress(job, 1)

        database_down(pg_admin)
        try:
            await asyncio.sleep(CATCH_UP_AFTER[0] + 0.5)  # the first catch-up read meets the outage
        finally:
            database_up(pg_admin)

        message = await receive(communicator, timeout=15)
        assert (message["type"], message["event_id"]) == ("job-update", missed)
        await communicator.disconnect()

    try:
        with caplog.at_level(logging.WARNING, logger="live.consumers"):
            run(scenario)
    finally:
        connection.close()  # this thread's session was ended with the others
    assert any("catch-up" in record.getMessage() for record in caplog.records), "the failed read was not logged"

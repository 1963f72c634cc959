"""When a schedule runs: cron expressions in a time zone, and intervals (docs/schedules.md).

Cron expressions are read by cronsim, which follows Debian cron across daylight-saving
changes: a time that does not exist that day (02:30 on the spring-forward night) runs at the
first minute after the gap, and a time that happens twice (01:30 on the fall-back night) runs
once, the first time. Times are computed in the schedule's zone and stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# An interval of whole minutes, from one minute to a year.
INTERVAL_MAX_MINUTES = 366 * 24 * 60


def when_problems(*, cron: str, timezone: str, interval_minutes: int | None) -> dict[str, list[str]]:
    """Field messages for a schedule's timing, or ``{}`` when it is valid."""
    problems: dict[str, list[str]] = {}
    cron = cron.strip()
    if bool(cron) == (interval_minutes is not None):
        problems["cron"] = ["Give either a cron expression or an interval in minutes, not both and not neither."]
        return problems
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems["timezone"] = [f"Unknown time zone {timezone!r}: use an IANA name such as Europe/Berlin or UTC."]
        return problems
    if cron:
        if len(cron.split()) != 5:
            problems["cron"] = ["Five fields: minute hour day-of-month month day-of-week (e.g. 0 3 * * 1-5)."]
        else:
            try:
                next(CronSim(cron, datetime.now(zone)))
            except CronSimError as exc:
                problems["cron"] = [f"Not a cron expression: {exc}."]
            except StopIteration:
                problems["cron"] = ["This expression never runs (e.g. 30 February)."]
    elif interval_minutes is not None and not 1 <= interval_minutes <= INTERVAL_MAX_MINUTES:
        problems["interval_minutes"] = [f"Whole minutes from 1 to {INTERVAL_MAX_MINUTES}."]
    return problems


def next_runs(
    *, cron: str, timezone: str, interval_minutes: int | None, after: datetime, count: int = 1
) -> list[datetime]:
    """The next ``count`` due times strictly after ``after`` (aware), in UTC. Valid timing only."""
    if cron.strip():
        zone = ZoneInfo(timezone)
        # cronsim yields times after the start it is given, at minute resolution.
        runs = CronSim(cron.strip(), after.astimezone(zone).replace(second=0, microsecond=0))
        out = []
        for due in runs:
            if due > after:
                out.append(due.astimezone(UTC))
            if len(out) == count:
                break
        return out
    assert interval_minutes is not None
    step = timedelta(minutes=interval_minutes)
    first = after.astimezone(UTC).replace(second=0, microsecond=0) + step
    return [first + n * step for n in range(count)]

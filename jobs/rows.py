"""Single-row SQL for the statements every job runs: its inserts, its claim and its finish.

A job writes its own row three times and appends three events (docs/engine.md), and the
throughput benchmark showed that most of that time was Django building statements, not
the database running them: a model ``save()`` of ``Job`` spends ~0.3 ms compiling an
``INSERT`` and preparing 31 values one field method at a time. The helpers here build
each statement once per model, column list and database vendor, adapt only the values
that need it (datetimes, UUIDs, JSON) and reuse the text. They write exactly what
``Model.save(force_insert=True)`` and ``QuerySet.update()`` would write, which
``tests/jobs/test_rows.py`` checks on SQLite and PostgreSQL, and are called only from
``jobs.services`` and ``jobs.events``, inside their transactions; the engine's own statements
are at the end, by name.

On PostgreSQL they also skip the server's parse and plan: they run on a server-side
binding cursor, so psycopg prepares each statement once per connection (after
``prepare_threshold`` runs, see ``DATABASE_PREPARED_STATEMENTS`` in the settings). Parsing,
analysing and planning were a third of the server's CPU time per job (``perf``, see
docs/benchmarks.md). The ORM keeps Django's default client-side binding.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, ForeignKey, Model

from jobs.models import Job, JobStatus

Adapter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


def _adapter(field: Field[Any, Any]) -> Adapter:
    """What turns this field's Python value into the driver's parameter, on ``connection``."""
    if isinstance(field, ForeignKey):
        return _adapter(field.target_field)
    kind = field.get_internal_type()
    if kind == "DateTimeField":
        return connection.ops.adapt_datetimefield_value
    if kind == "UUIDField":
        # A UUID as the field prepares it (native on PostgreSQL, 32 hex digits on SQLite) without
        # the field's layers for each value (a fifth of a 10,000-job bulk enqueue); anything else
        # (a string) takes the field's own preparation.
        native = connection.features.has_native_uuid_field
        return lambda value: (
            (value if native else value.hex) if type(value) is uuid.UUID else field.get_db_prep_save(value, connection)
        )
    if kind == "JSONField":
        # Takes strings or objects; the field's own preparation is the reference.
        return lambda value: field.get_db_prep_save(value, connection)
    return _identity


def _cursor() -> CursorWrapper:
    """``connection.cursor()``; on PostgreSQL with server-side binding, which psycopg can prepare.

    Wrapped like Django's own cursors, so errors become ``django.db`` errors. While
    queries are logged (``DEBUG``, ``CaptureQueriesContext``) Django's own cursor is used:
    its log cannot show the text of a prepared statement.
    """
    if connection.vendor != "postgresql" or connection.queries_logged:
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    cursor_class: Any = ServerBindingCursor  # the stubs know neither its arguments
    with connection.wrap_database_errors:
        raw = cursor_class(connection.connection)
    return connection.make_cursor(raw)


@cache
def _columns(model: type[Model], vendor: str, names: tuple[str, ...]) -> tuple[tuple[str, str, Adapter], ...]:
    """(attribute, quoted column, adapter) of each named field, in order."""
    out = []
    for name in names:
        field = model._meta.pk if name == "pk" else model._meta.get_field(name)
        assert isinstance(field, Field)
        out.append((field.attname, connection.ops.quote_name(str(field.column)), _adapter(field)))
    return tuple(out)


@cache
def _insert_sql(model: type[Model], vendor: str) -> tuple[str, tuple[tuple[str, str, Adapter], ...], bool]:
    meta = model._meta
    auto_pk = meta.auto_field is not None
    names = tuple(f.name for f in meta.concrete_fields if not (auto_pk and f.primary_key))
    columns = _columns(model, vendor, names)
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        connection.ops.quote_name(meta.db_table),
        ", ".join(column for _, column, _ in columns),
        ", ".join(["%s"] * len(columns)),
    )
    if auto_pk:
        sql += " RETURNING " + connection.ops.quote_name(str(meta.pk.column))
    return sql, columns, auto_pk


def insert(obj: Model) -> None:
    """``obj.save(force_insert=True)`` for a model whose fields need no ``pre_save`` hook.

    An auto-increment primary key comes back with ``RETURNING`` (SQLite 3.35+, PostgreSQL)
    and is set on ``obj``. No signals are sent: nothing in the project listens to these
    models' ``post_save``.
    """
    sql, columns, auto_pk = _insert_sql(type(obj), connection.vendor)
    params = [adapt(getattr(obj, attname)) for attname, _, adapt in columns]
    with _cursor() as cursor:
        cursor.execute(sql, params)
        if auto_pk:
            obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = connection.alias


def insert_many(objs: Sequence[Model]) -> None:
    """``insert`` for many rows of one model: on SQLite, multi-row ``INSERT``s of as many rows
    as a statement takes parameters; on PostgreSQL, one ``COPY``. Auto-increment keys are not
    read back (bulk enqueue's events need none); ``Job``'s UUID key is set before."""
    if not objs:
        return
    model = type(objs[0])
    sql, columns, _ = _insert_sql(model, connection.vendor)
    sql = sql.partition(" RETURNING ")[0]
    values = [[adapt(getattr(obj, attname)) for attname, _, adapt in columns] for obj in objs]
    with _cursor() as cursor:
        if connection.vendor == "postgresql":
            # COPY: the rows stream in one command (its triggers fire as an INSERT's do). A
            # multi-row VALUES of thousands of placeholders costs more to parse than to run.
            table = connection.ops.quote_name(model._meta.db_table)
            names = ", ".join(column for _, column, _ in columns)
            with connection.wrap_database_errors, cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for one in values:
                    copy.write_row(one)
        else:
            head, _, row = sql.partition(" VALUES ")
            per_batch = max(1, _max_parameters() // len(columns))
            for start in range(0, len(values), per_batch):
                batch = values[start : start + per_batch]
                cursor.execute(f"{head} VALUES {', '.join([row] * len(batch))}", [v for r in batch for v in r])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


def _max_parameters() -> int:
    """How many bound parameters one SQLite statement may carry: the library's own limit
    (32,766 since SQLite 3.32), not Django's conservative 999."""
    import sqlite3

    connection.ensure_connection()
    return int(connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


@cache
def _update_sql(
    model: type[Model], vendor: str, names: tuple[str, ...], where: tuple[tuple[str, int], ...]
) -> tuple[str, tuple[tuple[str, str, Adapter], ...], tuple[tuple[str, str, Adapter], ...]]:
    sets = _columns(model, vendor, names)
    conditions = _columns(model, vendor, tuple(name for name, _ in where))
    clauses = []
    for (_, column, _), (_, count) in zip(conditions, where, strict=True):
        clauses.append(f"{column} = %s" if count == 0 else f"{column} IN ({', '.join(['%s'] * count)})")
    sql = "UPDATE {} SET {} WHERE {}".format(
        connection.ops.quote_name(model._meta.db_table),
        ", ".join(f"{column} = %s" for _, column, _ in sets),
        " AND ".join(clauses),
    )
    return sql, sets, conditions


def _update_statement(model: type[Model], values: dict[str, Any], where: dict[str, Any]) -> tuple[str, list[Any]]:
    names = tuple(values)
    shape = tuple((key[:-4], len(value)) if key.endswith("__in") else (key, 0) for key, value in where.items())
    sql, sets, wheres = _update_sql(model, connection.vendor, names, shape)
    params = [adapt(values[name]) for name, (_, _, adapt) in zip(names, sets, strict=True)]
    for value, (_, count), (_, _, adapt) in zip(where.values(), shape, wheres, strict=True):
        if count:
            params.extend(adapt(v) for v in value)
        else:
            params.append(adapt(value))
    return sql, params


def update(model: type[Model], values: dict[str, Any], **where: Any) -> int:
    """``model.objects.filter(**where).update(**values)`` for plain values; returns the row count.

    ``where`` takes field names (equality) and ``<field>__in`` with a tuple or list.
    """
    sql, params = _update_statement(model, values, where)
    with _cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def update_returning(model: type[Model], values: dict[str, Any], **where: Any) -> Any:
    """``update()`` of at most one row, returning it as it is after the change, or None.

    One statement (``UPDATE … RETURNING``, SQLite 3.35+ and PostgreSQL) where the ORM
    needs a locked read, a save and a re-read.
    """
    sql, params = _update_statement(model, values, where)
    columns, attnames, converters = _returning(model, connection.vendor)
    with _cursor() as cursor:
        cursor.execute(sql + columns, params)
        row = cursor.fetchone()
    return None if row is None else _instance(model, attnames, converters, row)


@cache
def _select_columns(model: type[Model], vendor: str) -> tuple[str, list[str], list[tuple[int, list[Any]]]]:
    """Every concrete column quoted and joined, their attribute names, and the converters
    the ORM applies to them when it reads (datetimes, UUIDs, JSON on SQLite)."""
    meta = model._meta
    fields = list(meta.concrete_fields)
    converters = []
    for index, field in enumerate(fields):
        col = field.get_col(meta.db_table)
        found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        if found:
            converters.append((index, [(converter, col) for converter in found]))
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    return columns, [f.attname for f in fields], converters


@cache
def _select_sql(model: type[Model], vendor: str) -> tuple[str, list[str], list[tuple[int, list[Any]]]]:
    columns, attnames, converters = _select_columns(model, vendor)
    return f"SELECT {columns} FROM {connection.ops.quote_name(model._meta.db_table)} ", attnames, converters


@cache
def _returning(model: type[Model], vendor: str) -> tuple[str, list[str], list[tuple[int, list[Any]]]]:
    columns, attnames, converters = _select_columns(model, vendor)
    return f" RETURNING {columns}", attnames, converters


def _instance(model: type[Model], attnames: list[str], converters: list[tuple[int, list[Any]]], row: Any) -> Any:
    values = list(row)
    for index, chain in converters:
        value = values[index]
        for converter, col in chain:
            value = converter(value, col, connection)
        values[index] = value
    return model.from_db(connection.alias, attnames, values)


def select_one(model: type[Model], tail: str, params: Sequence[Any]) -> Any:
    """The first ``model`` row of ``SELECT <every column> FROM <table> <tail>``, or None.

    Values go through the same converters as the ORM's (datetimes, UUIDs, JSON on SQLite).
    """
    head, attnames, converters = _select_sql(model, connection.vendor)
    with _cursor() as cursor:
        cursor.execute(head + tail, params)
        row = cursor.fetchone()
    return None if row is None else _instance(model, attnames, converters, row)


def fetch_one(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    with _cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run one statement; returns the row count."""
    with _cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


# --- The engine's named statements ------------------------------------------------------------
# Every raw statement of ``jobs.services`` lives here under a name, so SQL has one home.
# Each runs on the caller's connection and inside the caller's transaction.

# Room for another wake-up in flight: fewer than ``concurrency`` are counted, or those counted
# were all counted before the cut-off and none was taken since, so they are believed lost
# (a broker restarted empty) and a fresh one is sent; an extra wake-up claims nothing.
_WAKEUP_ROOM = (
    "(pending_wakeups < concurrency OR (pending_wakeups > 0 AND (wakeup_sent_at IS NULL OR wakeup_sent_at < %s)))"
)
_QUEUE_WAKEUP_ROOM = f"SELECT {_WAKEUP_ROOM} FROM jobs_queue WHERE name = %s"
# Counting one after the cut-off forgets the lost ones: it is the only one in flight.
_COUNT_WAKEUP = (
    "UPDATE jobs_queue SET pending_wakeups = CASE WHEN wakeup_sent_at IS NULL OR wakeup_sent_at < %s "
    "THEN 1 ELSE pending_wakeups + 1 END, wakeup_sent_at = %s WHERE name = %s"
)
_COUNT_WAKEUP_BELOW_LIMIT = f"{_COUNT_WAKEUP} AND {_WAKEUP_ROOM}"
_SLOTS_HELD = "SELECT COUNT(*) FROM jobs_queueslot WHERE queue = %s AND job_id IS NOT NULL"
# A free slot of a queue that is not paused, below its concurrency, while no job holds a
# slot above it (after a lowered limit: no claims until those jobs end, so the new limit is
# never exceeded). Every claim asks.
_FREE_SLOT = (
    "SELECT s.id, q.concurrency FROM jobs_queueslot s INNER JOIN jobs_queue q ON q.name = s.queue "
    "WHERE s.queue = %s AND s.job_id IS NULL AND s.number < q.concurrency AND NOT q.paused "
    "AND NOT EXISTS (SELECT 1 FROM jobs_queueslot o WHERE o.queue = s.queue "
    "AND o.number >= q.concurrency AND o.job_id IS NOT NULL) "
    "ORDER BY s.number LIMIT 1"
)
_SLOT_SHORTFALL = (
    "SELECT q.concurrency, (SELECT COUNT(*) FROM jobs_queueslot s "
    "WHERE s.queue = q.name AND s.number < q.concurrency) FROM jobs_queue q WHERE q.name = %s"
)
_ORPHANED_SLOTS = (
    "FROM jobs_queueslot WHERE job_id IS NOT NULL AND NOT EXISTS ("
    "SELECT 1 FROM jobs_job j WHERE j.id = jobs_queueslot.job_id AND j.status = %s)"
)
_NEXT_RUNNABLE_JOB = (
    "WHERE queue = %s AND status = %s AND (run_after IS NULL OR run_after <= %s) "
    "ORDER BY priority DESC, created_at LIMIT 1"
)


def queue_wakeup_room(queue: str, *, lost_before: Any) -> bool | None:
    """Whether ``queue`` has room for another wake-up (see ``_WAKEUP_ROOM``); None if it has no row.

    ``lost_before``: wake-ups counted before it, none taken since, are believed lost.
    """
    row = fetch_one(_QUEUE_WAKEUP_ROOM, [connection.ops.adapt_datetimefield_value(lost_before), queue])
    return None if row is None else bool(row[0])


def queue_count_wakeups(queue: str, count: int, *, force: bool, now: Any, lost_before: Any) -> int:
    """Add up to ``count`` wake-ups in flight to ``queue`` at ``now``; returns how many were added.

    Without ``force`` a wake-up is only counted while there is room (see ``_WAKEUP_ROOM``).
    """
    adapt = connection.ops.adapt_datetimefield_value
    params = [adapt(lost_before), adapt(now), queue]
    sql = _COUNT_WAKEUP
    if not force:
        sql, params = _COUNT_WAKEUP_BELOW_LIMIT, [*params, adapt(lost_before)]
    added = 0
    with connection.cursor() as cursor:
        for _ in range(count):
            cursor.execute(sql, params)
            if not cursor.rowcount:
                break
            added += 1
    return added


def queue_slots_held(queue: str) -> int:
    row = fetch_one(_SLOTS_HELD, [queue])
    return int(row[0]) if row else 0


def queue_free_slot(queue: str, *, lock: str | None) -> tuple[int, int] | None:
    """``(id, the queue's concurrency)`` of a free slot of ``queue`` (see ``_FREE_SLOT``), or None.

    ``lock``: None (SQLite: the write lock serialises), ``"skip"`` (lock it, skipping the
    slots other transactions hold) or ``"wait"`` (lock it, waiting for those).
    """
    sql = _FREE_SLOT
    if lock == "skip":
        sql += " FOR UPDATE OF s SKIP LOCKED"
    elif lock == "wait":
        sql += " FOR UPDATE OF s"
    row = fetch_one(sql, [queue])
    return (row[0], row[1]) if row else None


def queue_slot_shortfall(queue: str) -> tuple[int, int] | None:
    """``(concurrency, slot rows below it)`` of ``queue``, or None if it has no row."""
    row = fetch_one(_SLOT_SHORTFALL, [queue])
    return None if row is None else (row[0], row[1])


def orphaned_slots_exist() -> bool:
    """Is a slot held by a job that is not running (the only status that holds one)?"""
    return fetch_one(f"SELECT 1 {_ORPHANED_SLOTS} LIMIT 1", [JobStatus.RUNNING]) is not None


def orphaned_slots_release() -> int:
    """Free the slots held by jobs that are not running; returns how many."""
    sql = f"UPDATE jobs_queueslot SET job_id = NULL WHERE id IN (SELECT id {_ORPHANED_SLOTS})"
    return execute(sql, [JobStatus.RUNNING])


def next_runnable_job(*, queue: str, now: Any, lock: bool, excluding: Sequence[int] = ()) -> Job | None:
    """The best runnable queued job of ``queue`` at ``now``, or None.

    ``lock`` locks the row, skipping rows other claims hold. ``excluding``: owners (user ids,
    ``SYSTEM_OWNER`` for jobs without a user) whose jobs are passed over.
    """
    tail = _NEXT_RUNNABLE_JOB
    if excluding:
        where, _, order = tail.partition(" ORDER BY ")
        tail = f"{where} AND {_OWNER} NOT IN ({', '.join(['%s'] * len(excluding))}) ORDER BY {order}"
    tail += " FOR UPDATE SKIP LOCKED" if lock else ""
    params = [queue, JobStatus.QUEUED, connection.ops.adapt_datetimefield_value(now), *excluding]
    return select_one(Job, tail, params)  # type: ignore[no-any-return]


# --- Fair queues: each owner's share of a queue's slots (docs/engine.md, "The scheduler's rule")
# Jobs without a user are one owner, the system; user ids start at 1.
SYSTEM_OWNER = 0
_OWNER = "COALESCE(user_id, 0)"
# The owners holding at least N of a queue's slots: a scan of that queue's few slot rows.
_OWNERS_HOLDING = (
    "SELECT COALESCE(j.user_id, 0) FROM jobs_queueslot s INNER JOIN jobs_job j ON j.id = s.job_id "
    "WHERE s.queue = %s GROUP BY COALESCE(j.user_id, 0) HAVING COUNT(*) >= %s"
)
_OWNER_SLOTS = (
    "SELECT COUNT(*) FROM jobs_queueslot s INNER JOIN jobs_job j ON j.id = s.job_id "
    "WHERE s.queue = %s AND COALESCE(j.user_id, 0) = %s"
)
_WAITING = (
    "EXISTS (SELECT 1 FROM jobs_job WHERE queue = %s AND status = %s AND ({}) "
    "AND (run_after IS NULL OR run_after <= %s))"
)


def queue_owners_holding(queue: str, *, at_least: int) -> list[int]:
    """The owners of the jobs holding at least ``at_least`` of ``queue``'s slots (committed ones)."""
    with _cursor() as cursor:
        cursor.execute(_OWNERS_HOLDING, [queue, at_least])
        return [row[0] for row in cursor.fetchall()]


def queue_owner_slots(queue: str, owner: int) -> int:
    """How many of ``queue``'s slots the jobs of ``owner`` hold."""
    row = fetch_one(_OWNER_SLOTS, [queue, owner])
    return int(row[0]) if row else 0


def _beside(excluding: Sequence[int]) -> list[tuple[str, list[int]]]:
    """Conditions on ``user_id`` (with their parameters) that together match every owner but
    ``excluding``, each a range of the ``job_queue_owner`` index, so no excluded owner's jobs
    are walked."""
    users = sorted({owner for owner in excluding if owner != SYSTEM_OWNER})
    ranges: list[tuple[str, list[int]]] = [] if SYSTEM_OWNER in excluding else [("user_id IS NULL", [])]
    if not users:
        return [*ranges, ("user_id IS NOT NULL", [])]
    ranges.append(("user_id < %s", [users[0]]))
    ranges.extend(("user_id > %s AND user_id < %s", [low, high]) for low, high in zip(users, users[1:], strict=False))
    ranges.append(("user_id > %s", [users[-1]]))
    return ranges


def queue_jobs_waiting_beside(queue: str, *, excluding: Sequence[int], now: Any) -> bool:
    """Is a runnable job of ``queue`` waiting whose owner is not one of ``excluding``?

    One index probe per range of owners between the excluded ones: its cost does not grow
    with the excluded owners' backlog.
    """
    when = connection.ops.adapt_datetimefield_value(now)
    probes, params = [], []
    for condition, bounds in _beside(excluding):
        probes.append(_WAITING.format(condition))
        params += [queue, JobStatus.QUEUED, *bounds, when]
    row = fetch_one("SELECT " + " OR ".join(probes), params)
    return bool(row and row[0])


def queue_owner_lock(queue: str, owner: int) -> None:
    """PostgreSQL: serialise, until the transaction ends, the claims of ``owner``'s jobs in ``queue``.

    A two-key advisory lock (a key space apart from the one-key locks of ``jobadmin.singleton``).
    """
    key = zlib.crc32(queue.encode()) - 2**31  # a signed int4
    execute("SELECT pg_advisory_xact_lock(%s, %s)", [key, owner])


# --- Counters that only grow (jobs.counters): an insert per increment, folded by the monitor --
_COUNTER_ADD = "INSERT INTO jobs_counterevent (name, label, bucket, amount) VALUES (%s, %s, %s, %s)"
_COUNTER_MERGE = (
    " ON CONFLICT (name, label, bucket) DO UPDATE SET count = jobs_countertotal.count + excluded.count,"
    " amount = jobs_countertotal.amount + excluded.amount"
)
# PostgreSQL: one statement, so the rows deleted are exactly the rows added up (ids commit out of
# order: an event committed between two statements would be deleted without being counted).
_COUNTER_FOLD_PG = (
    "WITH moved AS (DELETE FROM jobs_counterevent WHERE id IN "
    "(SELECT id FROM jobs_counterevent ORDER BY id LIMIT %s) RETURNING name, label, bucket, amount) "
    "INSERT INTO jobs_countertotal (name, label, bucket, count, amount) "
    "SELECT name, label, bucket, COUNT(*), COALESCE(SUM(amount), 0) FROM moved GROUP BY name, label, bucket"
    + _COUNTER_MERGE
)
# SQLite (no DELETE in a WITH): the fold's transaction holds the write lock, so every event up to
# the last id read is committed and nothing is added beside it. ``WHERE`` also settles SQLite's
# parsing of ``INSERT … SELECT … ON CONFLICT``.
_COUNTER_FOLD_LAST = "SELECT MAX(id) FROM (SELECT id FROM jobs_counterevent ORDER BY id LIMIT %s)"
_COUNTER_FOLD_SQLITE = (
    "INSERT INTO jobs_countertotal (name, label, bucket, count, amount) "
    "SELECT name, label, bucket, COUNT(*), COALESCE(SUM(amount), 0) FROM jobs_counterevent WHERE id <= %s "
    "GROUP BY name, label, bucket" + _COUNTER_MERGE
)
# The totals and the events not folded yet, in one statement: one snapshot, so a fold that
# commits meanwhile is seen entirely or not at all, and no counter reads lower than before.
_COUNTER_READ = (
    "SELECT name, label, bucket, SUM(n), SUM(a) FROM ("
    "SELECT name, label, bucket, count AS n, amount AS a FROM jobs_countertotal UNION ALL "
    "SELECT name, label, bucket, COUNT(*), COALESCE(SUM(amount), 0) FROM jobs_counterevent GROUP BY name, label, bucket"
    ") t GROUP BY name, label, bucket"
)


def counter_add(name: str, label: str, bucket: int, amount: float) -> None:
    execute(_COUNTER_ADD, [name, label, bucket, amount])


def counters_fold(batch: int) -> int:
    """Move up to ``batch`` counter events into the totals (inside the caller's transaction); returns
    how many totals rows changed (0: nothing was pending)."""
    if connection.vendor == "postgresql":
        return execute(_COUNTER_FOLD_PG, [batch])
    row = fetch_one(_COUNTER_FOLD_LAST, [batch])
    last = row[0] if row else None
    if last is None:
        return 0
    changed = execute(_COUNTER_FOLD_SQLITE, [last])
    execute("DELETE FROM jobs_counterevent WHERE id <= %s", [last])
    return changed


def counters_read() -> list[tuple[str, str, int, int, float]]:
    """``(name, label, bucket, count, amount)`` of every counter: folded plus pending."""
    with _cursor() as cursor:
        cursor.execute(_COUNTER_READ, [])
        return [(row[0], row[1], int(row[2]), int(row[3]), float(row[4])) for row in cursor.fetchall()]


# A batch's count of unfinished members (jobs.services.batch_finish): one member finished
# (the row lock this UPDATE takes serialises members finishing at once on different workers;
# only the one that brings it to 0 sees 0), or one queued again.
_BATCH_TAKE_ONE = (
    "UPDATE jobs_batch SET unfinished = unfinished - 1 WHERE id = %s AND unfinished > 0 RETURNING unfinished"
)
_BATCH_PUT_ONE_BACK = "UPDATE jobs_batch SET unfinished = unfinished + 1, finished_at = NULL WHERE id = %s"


def batch_member_finished(batch_id: int) -> int | None:
    """The batch's unfinished members after this one, or None if it counted none."""
    row = fetch_one(_BATCH_TAKE_ONE, [batch_id])
    return None if row is None else int(row[0])


def batch_member_requeued(batch_id: int) -> None:
    execute(_BATCH_PUT_ONE_BACK, [batch_id])

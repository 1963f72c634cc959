"""Page-number pagination that stays fast on a million rows.

A plain ``COUNT(*)`` over the filtered table on every page is what makes admin lists
slow at scale. Here the count is *capped*, and time-boxed (see ``capped_count``): the
database counts at most ``COUNT_CAP + 1`` matching rows (``SELECT COUNT(*) FROM (... LIMIT cap+1)``), so the
answer is exact below the cap and ``count_exact: false`` with ``count == COUNT_CAP``
above it ("10000+"). Whether there is a next page is decided by fetching one row more
than the page, never from the count, so ``next`` is right on every page.

Pages after the first are read by a *deferred join*: first the ids of the page, from
the ordering's index alone (``SELECT id ... ORDER BY ... OFFSET n LIMIT k``: an
index-only scan on PostgreSQL, a covering-index scan on SQLite, no table row read for
the rows skipped), then those few rows in full by primary key. Offset pagination reads
every row it skips; this way what it skips is index entries, not wide job rows.

``page`` and ``page_size`` are validated: anything that is not a positive integer, or a
page size above ``MAX_PAGE_SIZE``, is a 400 with a field message (never a 404 or 500).
A page past the end is an empty page.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import OperationalError, connections, transaction
from django.db.models import QuerySet, Value
from rest_framework import serializers
from rest_framework.pagination import BasePagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
COUNT_CAP = 10_000
# The most an exact count may take before the answer becomes an estimate (see capped_count).
COUNT_BUDGET_MS = 15.0
# A sanity bound on the page number; deep offsets cost a scan of the rows skipped, so
# clients that walk far should narrow with ``created_before`` instead (docs/api.md).
MAX_PAGE = 1_000_000


class _PageParams(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, max_value=MAX_PAGE, required=False, default=1)
    page_size = serializers.IntegerField(
        min_value=1, max_value=MAX_PAGE_SIZE, required=False, default=DEFAULT_PAGE_SIZE
    )


def capped_count(queryset: QuerySet[Any], cap: int | None = None, budget_ms: float | None = None) -> tuple[int, bool]:
    """``(count, exact)``: counts at most ``cap + 1`` rows, within a time budget.

    Below the cap an exact count must visit every matching row; for a combination of
    filters that no single index covers (``status=failed&type=x`` on a million rows) that
    can cost more than the page itself. So the count runs under ``COUNT_BUDGET_MS``
    (PostgreSQL: ``statement_timeout`` inside a savepoint; SQLite: a progress handler
    that interrupts the statement). Past the budget the answer is the planner's row
    estimate on PostgreSQL (0 on SQLite), clamped to the cap, flagged ``exact: False``;
    the caller raises it to what the page itself proves exists.
    """
    cap = COUNT_CAP if cap is None else cap
    budget_ms = COUNT_BUDGET_MS if budget_ms is None else budget_ms
    # ``SELECT 1``, not the primary key Django's ``count()`` of a slice selects: an index
    # on the filtered columns then answers alone (on SQLite the UUID key is not in the
    # other indexes, so selecting it read a table row per job counted: 10,001 lookups).
    limited = queryset.order_by().annotate(_one=Value(1)).values("_one")[: cap + 1]
    try:
        sql, params = limited.query.sql_with_params()
    except EmptyResultSet:  # ``.none()`` or a filter that can match nothing: no SQL at all
        return 0, True

    def count() -> int:
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({sql}) capped", params)
            return int(cursor.fetchone()[0])

    try:
        counted = _within_budget(count, budget_ms, queryset.db)
    except _OverBudget:
        return min(_estimate(queryset), cap), False
    if counted > cap:
        return cap, False
    return counted, True


class _OverBudget(Exception):
    pass


def _within_budget(run: Any, budget_ms: float, alias: str) -> int:
    connection = connections[alias]
    if connection.vendor == "postgresql":
        try:
            with transaction.atomic(using=alias):
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL statement_timeout = %s", [max(int(budget_ms), 1)])
                result = int(run())
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL statement_timeout = DEFAULT")
                return result
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) == "57014":  # query_canceled
                raise _OverBudget from None
            raise
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        raw = connection.connection
        deadline = time.perf_counter() + budget_ms / 1000
        raw.set_progress_handler(lambda: int(time.perf_counter() > deadline), 200)
        try:
            return int(run())
        except OperationalError as exc:
            if "interrupted" in str(exc):
                raise _OverBudget from None
            raise
        finally:
            raw.set_progress_handler(None, 0)
    return int(run())


def _estimate(queryset: QuerySet[Any]) -> int:
    """The planner's row estimate for the filtered query (PostgreSQL), else 0."""
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return 0
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def page_rows(queryset: QuerySet[Any], offset: int, limit: int) -> list[Any]:
    """Rows ``offset`` to ``offset + limit`` of an ordered queryset, in its order.

    The first page is one plain query. Deeper pages are a deferred join: the page's ids
    come from the ordering's index (the skipped rows are index entries only), then the
    rows themselves by primary key, put back in the order of the ids. Same rows in the
    same order as ``queryset[offset:offset + limit]`` (the orderings end in a unique
    tiebreaker, so that order is total); a row deleted between the two reads is left out.
    """
    if offset == 0:
        return list(queryset[:limit])
    ids = list(queryset.values_list("pk", flat=True)[offset : offset + limit])
    if not ids:
        return []
    by_pk = {row.pk: row for row in queryset.order_by().filter(pk__in=ids)}
    return [by_pk[pk] for pk in ids if pk in by_pk]


class CappedPageNumberPagination(BasePagination):
    page_query_param = "page"
    page_size_query_param = "page_size"

    def paginate_queryset(self, queryset: Any, request: Request, view: Any = None) -> list[Any]:
        params = _PageParams(
            data={key: request.query_params[key] for key in ("page", "page_size") if key in request.query_params}
        )
        params.is_valid(raise_exception=True)
        self.page: int = params.validated_data["page"]
        self.page_size: int = params.validated_data["page_size"]
        self.request = request
        offset = (self.page - 1) * self.page_size
        rows = page_rows(queryset, offset, self.page_size + 1)
        self.has_next = len(rows) > self.page_size
        rows = rows[: self.page_size]
        if self.page == 1 and not self.has_next:
            # The whole result is on this page: no count query needed.
            self.count, self.count_exact = len(rows), True
        else:
            self.count, self.count_exact = capped_count(queryset)
            # An estimate or a capped count never says less than this page proves exists.
            if not self.count_exact:
                self.count = max(self.count, offset + len(rows) + int(self.has_next))
        return rows

    def _link(self, page: int | None) -> str | None:
        if page is None:
            return None
        url = self.request.build_absolute_uri()
        if page == 1:
            return remove_query_param(url, self.page_query_param)
        return replace_query_param(url, self.page_query_param, page)

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            OrderedDict(
                [
                    ("count", self.count),
                    ("count_exact", self.count_exact),
                    ("page", self.page),
                    ("page_size", self.page_size),
                    ("next", self._link(self.page + 1 if self.has_next else None)),
                    ("previous", self._link(self.page - 1 if self.page > 1 else None)),
                    ("results", data),
                ]
            )
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["count", "count_exact", "page", "page_size", "next", "previous", "results"],
            "properties": {
                "count": {
                    "type": "integer",
                    "minimum": 0,
                    "description": f"Matching rows; exact up to {COUNT_CAP}, a lower bound when count_exact is false.",
                },
                "count_exact": {"type": "boolean"},
                "page": {"type": "integer", "minimum": 1},
                "page_size": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "1-based page number.",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page, default {DEFAULT_PAGE_SIZE}, at most {MAX_PAGE_SIZE}.",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
            },
        ]

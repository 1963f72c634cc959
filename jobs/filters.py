"""The job list filters, shared by the API list and the ``export-jobs`` job; the search
(``job_search``) also serves the admin's job list.

Every value is validated by a form field, so a malformed one (UUID, date, status, user
id, ordering key, parameter name) is a 400 with a field message, never a 500.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.validators import ProhibitNullCharactersValidator
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Func, JSONField, Q, QuerySet, TextField, Value
from django.db.models.expressions import Combinable
from django.db.models.fields.json import KeyTransform, KeyTransformExact
from django.db.models.sql.compiler import SQLCompiler
from django_filters.fields import IsoDateTimeField

from jobs.limits import TooDeep, check_depth
from jobs.models import Job, JobStatus

# Ordering keys of the API (DESIGN.md) → ``order_by`` terms. Each ends with a tiebreaker
# so pages never overlap, and each matches an index in ``jobs.models`` (a backward index
# scan serves the other direction). Rows without a value (a job not started or not
# finished yet) sort as PostgreSQL does natively: last ascending, first descending.
ORDERING_FIELDS = ["created_at", "updated_at", "started_at", "finished_at", "status", "priority", "duration"]
_NULLABLE = {"started_at", "finished_at", "duration"}


def ordering_terms(key: str) -> list[Any]:
    descending = key.startswith("-")
    name = key.lstrip("-")
    if name == "created_at":
        return ["-created_at", "id"] if descending else ["created_at", "-id"]
    if name == "status":  # the index is (status, -created_at)
        return ["-status", "created_at", "-id"] if descending else ["status", "-created_at", "id"]
    if name in _NULLABLE:
        first = F(name).desc(nulls_first=True) if descending else F(name).asc(nulls_last=True)
    else:
        first = F(name).desc() if descending else F(name).asc()
    return [first, "-created_at", "id"] if descending else [first, "created_at", "-id"]


ORDERING_CHOICES = [(key, key) for name in ORDERING_FIELDS for key in (name, f"-{name}")]
DEFAULT_ORDERING = "-created_at"
MAX_INT = 2**31 - 1


class SafeIsoDateTimeField(IsoDateTimeField):
    """ISO 8601. A valid date at the edge of the calendar whose UTC form overflows
    (``9999-12-31T23:00-05:00``) is clamped to the last (or first) UTC instant, so it
    filters as the client meant instead of failing in the database driver."""

    def clean(self, value: Any) -> datetime | None:
        result = super().clean(value)
        if result is not None:
            try:
                result = result.astimezone(UTC)
            except (OverflowError, ValueError):
                edge = datetime.max.replace(tzinfo=UTC) if result.year > 1 else datetime.min.replace(tzinfo=UTC)
                result = edge
        return result


class AnyTextField(forms.CharField):
    """Any string, NUL included: a name containing NUL cannot be stored (PostgreSQL text
    refuses it), so it is a valid query that matches nothing, not bad input."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)]


class TextFilter(django_filters.CharFilter):
    field_class = AnyTextField

    def filter(self, qs: Any, value: Any) -> Any:
        if value and "\x00" in value:
            return qs.none()
        return super().filter(qs, value)


class SafeIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = SafeIsoDateTimeField


class UserIdFilter(django_filters.Filter):
    field_class = forms.IntegerField


class UUIDInFilter(django_filters.BaseInFilter, django_filters.UUIDFilter):
    pass


# Parameters whose empty value is not a value of their type: ``?user=`` is a 400, like any
# other malformed value, rather than silently meaning "no filter".
NON_EMPTY = ("status", "user", "batch", "created_after", "created_before", "ordering")


class JobFilterForm(forms.Form):
    def _values(self, name: str) -> list[Any]:
        return self.data.getlist(name) if hasattr(self.data, "getlist") else [self.data.get(name)]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        for name in NON_EMPTY:
            values = self._values(name)
            if name in self.data and "" in values:
                self.add_error(name, forms.ValidationError("This value may not be empty.", code="blank"))
        for name in self.data:
            if isinstance(name, str) and name.startswith(PARAM_PREFIX) and len(self._values(name)) > 1:
                self.add_error(name, forms.ValidationError("Give each parameter once.", code="repeated"))
        return cleaned


# --- search ---------------------------------------------------------------------------------

# The users whose name contains the search term are looked up first (a small table), at most
# this many; their jobs are then found through the job table's ``user`` index.
SEARCH_USERS_MAX = 1000

# The text ``search`` looks in: the id (as PostgreSQL writes a UUID), the type, the values of
# the parameters (a JSON array of every scalar, nested ones included: keys are not searched)
# and the error. On PostgreSQL migration 0017 indexes ``UPPER(<this>)`` with pg_trgm's
# ``gin_trgm_ops``, and Django's ``icontains`` there is ``UPPER(<this>::text) LIKE UPPER(%s)``:
# the same expression, so the planner answers a search from that index. The migration holds
# its own copy of this SQL (a migration must not change when the code does):
# tests/jobs/test_search.py checks that the plan uses the index. Change both together.
_PG_SEARCH_TEXT = (
    "({id}::text || ' ' || {type} || ' ' || jsonb_path_query_array({params}, "
    "'strict $.** ? (@.type() != \"object\" && @.type() != \"array\")')::text || ' ' || {error})"
)
# SQLite (no index: a scan, like the embedded default's other unindexed filters), the same text.
_SQLITE_SEARCH_TEXT = (
    "(substr({id}, 1, 8) || '-' || substr({id}, 9, 4) || '-' || substr({id}, 13, 4) || '-'"
    " || substr({id}, 17, 4) || '-' || substr({id}, 21) || ' ' || {type} || ' ' || (SELECT '[' || COALESCE("
    "group_concat(CASE WHEN v.type IN ('true', 'false', 'null') THEN v.type ELSE json_quote(v.atom) END, ', '),"
    " '') || ']' FROM json_tree({params}) AS v WHERE v.type NOT IN ('object', 'array')) || ' ' || {error})"
)


class JobSearchText(Func):
    """The text of a job that ``search`` matches: id, type, parameter values and error."""

    output_field = TextField()

    def __init__(self) -> None:
        super().__init__(F("id"), F("type"), F("params"), F("error"))

    def as_sql(  # type: ignore[override]  # Func's signature, which the stubs type apart from Expression's
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[str | int, ...]]:
        columns = {}
        for name, source in zip(("id", "type", "params", "error"), self.get_source_expressions(), strict=True):
            sql, args = compiler.compile(source)
            assert not args, "a column reference has no parameters"
            columns[name] = sql
        text = _PG_SEARCH_TEXT if connection.vendor == "postgresql" else _SQLITE_SEARCH_TEXT
        return text.format(**columns), ()


def job_search(queryset: QuerySet[Job], term: str) -> QuerySet[Job]:
    """The jobs whose id, type, parameter values or error contain ``term`` (any case), or
    whose creator's username does; a whole UUID finds its job alone (by primary key).

    The API's ``search`` filter and the admin's search box both call this.
    """
    term = term.strip()
    if not term:
        return queryset
    if "\x00" in term:  # no stored text contains NUL (PostgreSQL refuses it)
        return queryset.none()
    try:
        return queryset.filter(pk=uuid.UUID(term))
    except ValueError:
        pass
    users = get_user_model().objects.filter(username__icontains=term).order_by("pk")
    user_ids = list(users.values_list("pk", flat=True)[:SEARCH_USERS_MAX])
    matches = Q(search_text__icontains=term)
    if user_ids:  # an empty ``IN ()`` would cost the planner the index's bitmap OR
        matches |= Q(user_id__in=user_ids)
    return queryset.alias(search_text=JobSearchText()).filter(matches)


# --- params.<key>=<value> -------------------------------------------------------------------

PARAM_PREFIX = "params."
# A parameter's name, or the path to a nested one (``source.path``): identifier-like names.
PARAM_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}(?:\.[A-Za-z_][A-Za-z0-9_]{0,99}){0,4}")
BAD_PARAM_PATH = (
    "Not a parameter name: use params.<name>, a name of letters, digits and _ not starting with a digit "
    "(params.<name>.<name> for a nested one, at most 5 levels)."
)


@dataclass(frozen=True)
class JSONValue:
    """A parameter value as the filter compares it (a wrapper, so JSON ``null``, ``""`` and
    ``{}`` are values, not django-filter's "no filter")."""

    value: Any


def _not_json(constant: str) -> Any:
    raise ValueError(constant)  # NaN and Infinity are not JSON: the text is a string then


def _scalars(value: Any) -> Iterator[Any]:
    """Every scalar of a JSON value, object keys included."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        else:
            yield node


class ParamValueField(AnyTextField):
    """``params.<path>=<value>``: the value is JSON when it reads as JSON (``5``, ``true``,
    ``null``, ``"5"``, ``{"a": 1}``), else the string it is (``fast``, ``s3://x``)."""

    def __init__(self, *args: Any, path_valid: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", settings.JOBADMIN_MAX_PARAM_STRING)
        super().__init__(*args, strip=False, **kwargs)
        self.path_valid = path_valid

    def clean(self, value: Any) -> JSONValue:
        if not self.path_valid:
            raise forms.ValidationError(BAD_PARAM_PATH, code="invalid")
        text = super().clean(value)
        try:
            parsed = json.loads(text, parse_constant=_not_json)
        except ValueError:
            return JSONValue(text)
        try:
            check_depth(parsed)
        except TooDeep as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None
        for scalar in _scalars(parsed):
            if isinstance(scalar, float) and not math.isfinite(scalar):  # 1e999: PostgreSQL refuses it
                raise forms.ValidationError("A number must be finite.", code="invalid")
            if isinstance(scalar, str) and not scalar.isascii():
                try:
                    scalar.encode("utf-8")
                except UnicodeEncodeError:  # "\\ud800"
                    raise forms.ValidationError("Not valid Unicode (a lone surrogate).", code="invalid") from None
        return JSONValue(parsed)


class ParamFilter(django_filters.Filter):
    """The jobs whose parameter at ``field_name`` (a dotted path) equals the value, as JSON.

    On PostgreSQL a containment test (``params @> {...}``) comes first: migration 0017's GIN
    index (``jsonb_path_ops``) answers it, and the equality then keeps exact matches only
    (containment alone would let ``[1, 2]`` match ``[1]``).
    """

    field_class = ParamValueField

    def filter(self, qs: Any, value: Any) -> Any:
        if not isinstance(value, JSONValue):  # not given
            return qs
        if any(isinstance(scalar, str) and "\x00" in scalar for scalar in _scalars(value.value)):
            return qs.none()  # nothing stored holds a NUL (PostgreSQL refuses it)
        path = self.field_name.split(".")
        target: Combinable = F("params")
        for key in path:
            target = KeyTransform(key, target)
        matches = Q(KeyTransformExact(target, Value(value.value, output_field=JSONField())))
        if connections[qs.db].vendor == "postgresql":
            contained = value.value
            for key in reversed(path):
                contained = {key: contained}
            matches &= Q(params__contains=contained)
        return qs.filter(matches)


def param_filters(data: Any) -> dict[str, ParamFilter]:
    """A filter for each ``params.<path>`` of the query; a name that is not a valid path gets a
    filter whose only answer is a field message, so the request is a 400 naming it."""
    return {
        name: ParamFilter(
            field_name=name.removeprefix(PARAM_PREFIX),
            path_valid=PARAM_PATH.fullmatch(name.removeprefix(PARAM_PREFIX)) is not None,
        )
        for name in data
        if isinstance(name, str) and name.startswith(PARAM_PREFIX)
    }


class JobFilter(django_filters.FilterSet):
    id = UUIDInFilter(field_name="id", label="Job ids, comma-separated UUIDs")
    # distinct=False: no join can duplicate a row, and DISTINCT over a million rows is a sort.
    status = django_filters.MultipleChoiceFilter(
        choices=JobStatus.choices, distinct=False, label="Status (repeat for several)"
    )
    type = TextFilter(field_name="type", label="Job type")
    queue = TextFilter(field_name="queue", label="Queue name")
    user = UserIdFilter(field_name="user_id", min_value=1, max_value=MAX_INT, label="Owner's user id")
    batch = UserIdFilter(field_name="batch_id", min_value=1, max_value=MAX_INT, label="The batch's id (its members)")
    created_after = SafeIsoDateTimeFilter(field_name="created_at", lookup_expr="gte", label="Created at or after")
    created_before = SafeIsoDateTimeFilter(field_name="created_at", lookup_expr="lt", label="Created before")
    search = TextFilter(
        method="filter_search",
        label="Search: text in the id, type, creator's username, parameter values or error (any case)",
    )
    ordering = django_filters.ChoiceFilter(
        method="filter_ordering",
        choices=ORDERING_CHOICES,
        empty_label=None,
        label="Order by this field; prefix with - for descending (default -created_at)",
    )

    class Meta:
        model = Job
        form = JobFilterForm
        fields = [
            "id",
            "status",
            "type",
            "queue",
            "user",
            "batch",
            "created_after",
            "created_before",
            "search",
            "ordering",
        ]

    # ``params.<path>=<value>`` parameters, besides the declared filters (see ``param_filters``).
    param_prefix = PARAM_PREFIX

    def __init__(self, data: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(data, *args, **kwargs)
        if data is not None:
            self.filters.update(param_filters(data))

    def filter_search(self, queryset: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
        return job_search(queryset, value)

    def filter_ordering(self, queryset: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
        return queryset.order_by(*ordering_terms(value or DEFAULT_ORDERING))

    @property
    def qs(self) -> QuerySet[Job]:
        queryset = super().qs
        if not self.form.cleaned_data.get("ordering"):
            queryset = queryset.order_by(*ordering_terms(DEFAULT_ORDERING))
        return queryset


def filter_jobs(queryset: QuerySet[Job], params: dict[str, Any]) -> QuerySet[Job]:
    """Apply list filters given as a plain dict (as the export job stores them)."""
    from django.http import QueryDict

    data = QueryDict(mutable=True)
    for key, value in params.items():
        if value in (None, "", []):
            continue
        if isinstance(value, list | tuple):
            data.setlist(key, [str(v) for v in value])
        else:
            data[key] = str(value)
    filterset = JobFilter(data=data, queryset=queryset)
    if not filterset.is_valid():
        raise ValueError(filterset.errors.as_json())
    return filterset.qs

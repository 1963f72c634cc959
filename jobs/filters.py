"""The job list filters, shared by the API list and the ``export-jobs`` job.

Every value is validated by a form field, so a malformed one (UUID, date, status, user
id, ordering key) is a 400 with a field message, never a 500.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.contrib.auth import get_user_model
from django.core.validators import ProhibitNullCharactersValidator
from django.db.models import F, Q, QuerySet
from django_filters.fields import IsoDateTimeField

from jobs.models import Job, JobStatus
from jobs.registry import all_job_types

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
    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        for name in NON_EMPTY:
            values = self.data.getlist(name) if hasattr(self.data, "getlist") else [self.data.get(name)]
            if name in self.data and "" in values:
                self.add_error(name, forms.ValidationError("This value may not be empty.", code="blank"))
        return cleaned


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
    search = TextFilter(method="filter_search", label="Search: a job id, a type prefix or a creator's username prefix")
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

    def filter_search(self, queryset: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
        """An exact id, or a type / username prefix.

        Prefixes are resolved against the small tables first (registered types, users),
        so the job table is filtered through its ``type`` and ``user`` indexes instead of
        a ``LIKE`` scan over every row.
        """
        value = value.strip()
        if not value:
            return queryset
        if "\x00" in value:
            return queryset.none()
        try:
            return queryset.filter(pk=uuid.UUID(value))
        except ValueError:
            pass
        lowered = value.lower()
        types = {t.name for t in all_job_types() if t.name.lower().startswith(lowered)} | {value}
        user_ids = list(
            get_user_model().objects.filter(username__istartswith=value).values_list("pk", flat=True)[:1000]
        )
        return queryset.filter(Q(type__in=sorted(types)) | Q(user_id__in=user_ids))

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

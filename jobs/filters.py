"""The job list filters, shared by the API list and the ``export-jobs`` job."""

from __future__ import annotations

import uuid
from typing import Any

import django_filters
from django.db.models import Q, QuerySet

from jobs.models import Job, JobStatus


class JobFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices)
    type = django_filters.CharFilter(field_name="type")
    queue = django_filters.CharFilter(field_name="queue")
    user = django_filters.NumberFilter(field_name="user_id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    search = django_filters.CharFilter(method="filter_search", label="Search id, type and creator")

    class Meta:
        model = Job
        fields = ["status", "type", "queue", "user", "created_after", "created_before", "search"]

    def filter_search(self, queryset: QuerySet[Job], name: str, value: str) -> QuerySet[Job]:
        value = value.strip()
        if not value:
            return queryset
        try:
            return queryset.filter(pk=uuid.UUID(value))
        except ValueError:
            pass
        return queryset.filter(Q(type__istartswith=value) | Q(user__username__istartswith=value))


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

"""The job list's own parts beyond Django's: a page-size choice and a "Past hour" range.

Both read a query parameter of their own that the admin's lookups must not see (Django would
take it for a field lookup and answer "?e=1"); each says which one, and refuses a value it
does not offer the way the admin refuses a bad lookup.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from jobs.admin.times import ServerDayFilter
from jobs.models import Job

PER_PAGE_VAR = "per_page"
PER_PAGE_CHOICES = (50, 100, 200, 500)  # 500: the API's largest page too


class JobChangeList(ChangeList):
    """Django's change list with ``?per_page=`` (one of ``PER_PAGE_CHOICES``) for its page size."""

    def __init__(
        self,
        request: HttpRequest,
        model: Any,
        list_display: Any,
        list_display_links: Any,
        list_filter: Any,
        date_hierarchy: Any,
        search_fields: Any,
        list_select_related: Any,
        list_per_page: int,
        *args: Any,
    ) -> None:
        asked = request.GET.get(PER_PAGE_VAR)
        if asked is not None and asked not in {str(n) for n in PER_PAGE_CHOICES}:
            raise IncorrectLookupParameters(f"{PER_PAGE_VAR} must be one of {', '.join(map(str, PER_PAGE_CHOICES))}.")
        per_page = int(asked) if asked else list_per_page
        super().__init__(
            request,
            model,
            list_display,
            list_display_links,
            list_filter,
            date_hierarchy,
            search_fields,
            list_select_related,
            per_page,
            *args,
        )

    def get_filters_params(self, params: Any = None) -> Any:
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(PER_PAGE_VAR, None)
        return lookup_params

    def per_page_links(self) -> list[dict[str, Any]]:
        """The page-size choice: each size's link (back to page 1) and whether it is the current one."""
        return [
            {
                "size": size,
                "url": self.get_query_string({PER_PAGE_VAR: size}, [PAGE_VAR]),
                "selected": size == self.list_per_page,
            }
            for size in PER_PAGE_CHOICES
        ]


class CreatedFilter(ServerDayFilter):
    """The created date's filter with "Past hour" first: ``?created_at__past=1h``, relative to
    each request (a fixed ``created_at__gte`` would mean "since 15:04" once reloaded)."""

    PAST = {"1h": ("Past hour", timedelta(hours=1))}

    def __init__(self, field: Any, request: Any, params: Any, model: Any, model_admin: Any, field_path: str) -> None:
        self.lookup_kwarg_past = f"{field_path}__past"
        super().__init__(field, request, params, model, model_admin, field_path)
        any_date, *rest = self.links
        past = tuple((label, {self.lookup_kwarg_past: key}) for key, (label, _) in self.PAST.items())
        self.links = (any_date, *past, *rest)  # type: ignore[arg-type]  # the stubs allow no str value
        # Not a field lookup: taken out of what Django's queryset() hands to .filter().
        asked = self.used_parameters.pop(self.lookup_kwarg_past, None)
        key = asked[-1] if isinstance(asked, list) else asked
        if key is not None and key not in self.PAST:
            raise IncorrectLookupParameters(f"{self.lookup_kwarg_past} must be one of {', '.join(self.PAST)}.")
        self.past = None if key is None else self.PAST[key][1]

    def expected_parameters(self) -> list[str | None]:
        return [*super().expected_parameters(), self.lookup_kwarg_past]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        if self.past is not None:
            queryset = queryset.filter(**{f"{self.field_path}__gte": timezone.now() - self.past})
        filtered = super().queryset(request, queryset)
        assert filtered is not None, "a field's filter always answers a queryset"
        return filtered

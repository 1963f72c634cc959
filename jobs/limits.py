"""Bounded input: how deep a JSON value may nest, how long a string in params may be, and
how big the whole params document may be (docs/security.md, "Input limits").

The API's JSON parser (``jobs.api.input``) and every enqueue (``JobType.validate_params``:
the API, the admin's form, ``django.tasks``, the CLI) ask this one module, so no way in
is looser than another. The walk is iterative: a value nested a thousand levels deep is
refused, not a ``RecursionError``.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.checks import Error


class TooDeep(ValueError):
    """A value nested deeper than ``JOBADMIN_MAX_JSON_DEPTH``; ``path`` is where it went too deep."""

    def __init__(self, limit: int, path: str) -> None:
        super().__init__(f"Nested deeper than {limit} levels (at {path or 'the top'}).")
        self.path = path


def _join(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def check_depth(value: Any, *, limit: int | None = None, path: str = "") -> None:
    """Raise ``TooDeep`` if ``value`` nests objects and arrays deeper than ``limit`` levels
    (a scalar is depth 0, ``{}`` or ``[]`` depth 1); ``path`` names ``value`` in the message."""
    limit = settings.JOBADMIN_MAX_JSON_DEPTH if limit is None else limit
    stack: list[tuple[Any, int, str]] = [(value, 0, path)]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict | list | tuple):
            if depth + 1 > limit:
                raise TooDeep(limit, path)
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((child, depth + 1, _join(path, key)) for key, child in items)


def params_problems(params: dict[str, Any]) -> dict[str, list[str]]:
    """What makes ``params`` too big, as field messages keyed by the top-level parameter (or
    ``non_field_errors`` for the whole document); empty when it is within the bounds.

    Every string, dictionary keys included, may have at most ``JOBADMIN_MAX_PARAM_STRING``
    characters; the document nests at most ``JOBADMIN_MAX_JSON_DEPTH`` levels and is at most
    ``JOBADMIN_MAX_PARAMS_BYTES`` bytes as compact UTF-8 JSON (as it is stored).
    """
    longest = settings.JOBADMIN_MAX_PARAM_STRING
    problems: dict[str, list[str]] = {}
    for name, value in params.items():
        top = str(name)
        if len(top) > longest:
            problems.setdefault("non_field_errors", []).append(f"A parameter name is longer than {longest} characters.")
            continue
        try:  # the document itself is the first level
            check_depth(value, limit=settings.JOBADMIN_MAX_JSON_DEPTH - 1, path=top)
        except TooDeep as exc:
            problems[top] = [f"Nested deeper than {settings.JOBADMIN_MAX_JSON_DEPTH} levels (at {exc.path})."]
            continue
        where = _long_string(value, top, longest)
        if where is not None:
            problems[top] = [f"Text longer than {longest} characters (at {where})."]
    if problems:
        return problems
    size = len(json.dumps(params, separators=(",", ":"), ensure_ascii=False, default=str).encode())
    if size > settings.JOBADMIN_MAX_PARAMS_BYTES:
        return {
            "non_field_errors": [
                f"Params are {size} bytes as JSON; at most {settings.JOBADMIN_MAX_PARAMS_BYTES} are accepted."
            ]
        }
    return {}


def _long_string(value: Any, path: str, longest: int) -> str | None:
    """The path of the first string (or key) in ``value`` longer than ``longest``, or None."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if len(node) > longest:
                return where
        elif isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and len(key) > longest:
                    return f"a key of {where}"
                stack.append((child, _join(where, key)))
        elif isinstance(node, list | tuple):
            stack.extend((child, _join(where, index)) for index, child in enumerate(node))
    return None


def check_limits(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """A system check: each bound is a whole number of at least 1 (the depth at least 2:
    a body and its params object)."""
    found = []
    bounds = {
        "JOBADMIN_MAX_PARAM_STRING": (settings.JOBADMIN_MAX_PARAM_STRING, 1),
        "JOBADMIN_MAX_PARAMS_BYTES": (settings.JOBADMIN_MAX_PARAMS_BYTES, 1),
        "JOBADMIN_MAX_JSON_DEPTH": (settings.JOBADMIN_MAX_JSON_DEPTH, 2),
    }
    for name, (value, least) in bounds.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            found.append(Error(f"{name} must be a whole number of at least {least}, not {value!r}.", id="jobs.E010"))
    return found

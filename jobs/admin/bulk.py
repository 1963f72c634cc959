"""One message for a bulk action in the admin: what it did, what was refused and why, and what the
user may not touch, with the objects of each named (the first few, then a count).

A bulk action over 200 jobs used to say 200 things. ``BulkReport`` gathers the outcomes while the
action runs and sends one message at the end: a success when everything was done, a warning when
anything was refused. One object is named in the message's head ("Cancel crawl: refused — ...").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib import admin, messages
from django.http import HttpRequest

#: Objects named in each part of the message; the rest are counted ("and 12 more").
NAMED = 5


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:NAMED])
    return f"{shown} and {len(names) - NAMED} more" if len(names) > NAMED else shown


@dataclass
class BulkReport:
    """The outcomes of one bulk action (``label``, e.g. "Cancel") over objects called ``noun``
    (singular, plural), each outcome keyed by its words so that equal ones are told once."""

    label: str
    noun: tuple[str, str]
    done: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, list[str]] = field(default_factory=dict)

    def did(self, name: object, outcome: str) -> None:
        self.done.setdefault(outcome.rstrip("."), []).append(str(name))

    def refuse(self, name: object, reason: str) -> None:
        self.refused.setdefault(reason.rstrip("."), []).append(str(name))

    def _count(self, n: int) -> str:
        return f"{n} {self.noun[0] if n == 1 else self.noun[1]}"

    def text(self) -> str:
        done = sum(len(names) for names in self.done.values())
        total = done + sum(len(names) for names in self.refused.values())
        if total == 1:  # one object (a page's own button, or one selected): said of it by name
            ((outcome, (name,)),) = (self.done or {f"refused — {r}": n for r, n in self.refused.items()}).items()
            return f"{self.label} {name}: {outcome}."
        parts = [f"{len(names)} {outcome} ({_names(names)})" for outcome, names in self.done.items()]
        parts += [f"{len(names)} refused — {reason} ({_names(names)})" for reason, names in self.refused.items()]
        head = f"{self.label}: no {self.noun[0]} was changed" if not done else f"{self.label}: {self._count(total)}"
        if not total:
            return f"{head}."
        return f"{head} — {'; '.join(parts)}."

    def level(self) -> int:
        if not self.done:
            return messages.WARNING if self.refused else messages.INFO
        return messages.WARNING if self.refused else messages.SUCCESS

    def send(self, model_admin: admin.ModelAdmin, request: HttpRequest) -> None:
        model_admin.message_user(request, self.text(), self.level())

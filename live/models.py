"""What live delivery keeps in the database: the relay's place in the event log."""

from __future__ import annotations

from django.db import models


class RelayState(models.Model):
    """The relay's watermark and the ids below it that it has not seen yet (its gaps).

    One row per relay (``name``; one relay per deployment, so one row). A relay that
    starts continues from here, so the events committed while none ran (a restart, a
    deploy, a monitor failover) are still published. ``migrate`` writes the first row
    (migration 0003, at the latest event then); with no row a relay starts at the latest
    event. Written by the relay after what it read has been published (``live.relay``).
    """

    name = models.CharField(primary_key=True, max_length=50)
    cursor = models.BigIntegerField()
    # Event ids below ``cursor`` not seen yet: on PostgreSQL an id becomes visible at its
    # COMMIT, so a lower id may appear after a higher one was read (or never: a rollback).
    gaps = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"relay {self.name} at {self.cursor} ({len(self.gaps)} gaps)"

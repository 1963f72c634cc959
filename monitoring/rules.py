"""Writing alert rules (the API's ``/api/alert-rules/``; the admin writes through its form).

Every write runs the model's full validation, ``AlertRule.clean`` included: a webhook that
points inside the network (``monitoring.webhooks``) is refused with a field error, as the
admin's form refuses it, and nothing is saved. The same name twice is a field error too.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from monitoring.models import AlertRule


@transaction.atomic
def alert_rule_create(*, fields: dict[str, Any]) -> AlertRule:
    rule = AlertRule(**fields)
    rule.full_clean()
    rule.save()
    return rule


@transaction.atomic
def alert_rule_update(*, rule: AlertRule, changes: dict[str, Any]) -> AlertRule:
    """Apply ``changes`` (a partial update) if the rule they make is valid; else nothing changes."""
    rule = AlertRule.objects.select_for_update().get(pk=rule.pk)
    for name, value in changes.items():
        setattr(rule, name, value)
    rule.full_clean()
    rule.save()
    return rule


@transaction.atomic
def alert_rule_delete(*, rule: AlertRule) -> None:
    """Delete the rule and its alerts (a built-in rule too, as in the admin: the migration does not
    bring it back; disable one with ``enabled: false`` to keep its history)."""
    rule.delete()

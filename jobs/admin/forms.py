"""The admin's enqueue form, generated from a job type's params serializer.

Each serializer field becomes the closest Django form field (limits, choices, help text
and defaults carried over) so the browser shows labelled inputs and the admin shows
field errors in place. The form only shapes input: ``services.job_enqueue`` validates
the params again against the serializer, and its messages are put back on the fields.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from django import forms
from django.conf import settings
from rest_framework import serializers

from jobs import selectors
from jobs.registry import JobType

# Names of the form's own fields; a params field with one of these names is prefixed.
QUEUE_FIELD = "_queue"
PRIORITY_FIELD = "_priority"
# A key new with each rendered form, sent back with it: a second submit of the same form (a
# double click, a resent POST) is an ``Idempotency-Key`` replay, not a second job.
SUBMISSION_FIELD = "_submission"


def _common(field: serializers.Field) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "required": bool(field.required),
        "label": field.label or (field.field_name or "").replace("_", " ").capitalize(),
        "help_text": field.help_text or "",
    }
    default = getattr(field, "default", serializers.empty)
    if default is not serializers.empty and not callable(default):
        kwargs["initial"] = default
    return kwargs


def form_field_for(field: serializers.Field) -> forms.Field:
    """The Django form field that stands for one serializer field."""
    kwargs = _common(field)
    if isinstance(field, serializers.BooleanField):
        kwargs["required"] = False
        return forms.BooleanField(**kwargs)
    if isinstance(field, serializers.IntegerField):
        return forms.IntegerField(min_value=field.min_value, max_value=field.max_value, **kwargs)
    if isinstance(field, serializers.FloatField | serializers.DecimalField):
        return forms.FloatField(
            min_value=getattr(field, "min_value", None), max_value=getattr(field, "max_value", None), **kwargs
        )
    if isinstance(field, serializers.MultipleChoiceField):
        return forms.MultipleChoiceField(choices=list(field.choices.items()), **kwargs)
    if isinstance(field, serializers.ChoiceField):
        choices = list(field.choices.items())
        if not kwargs["required"]:
            choices = [("", "---------"), *choices]
        return forms.ChoiceField(choices=choices, **kwargs)
    if isinstance(field, serializers.ListField) and isinstance(field.child, serializers.ChoiceField):
        return forms.MultipleChoiceField(choices=list(field.child.choices.items()), **kwargs)
    if isinstance(field, serializers.DateTimeField):
        return forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}), **kwargs)
    if isinstance(field, serializers.DateField):
        return forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), **kwargs)
    if isinstance(field, serializers.CharField):
        return forms.CharField(max_length=field.max_length, min_length=field.min_length, strip=False, **kwargs)
    # Anything else (lists, nested objects, JSON) is entered as JSON.
    return forms.JSONField(**kwargs)


def params_field_name(name: str) -> str:
    return f"p_{name}" if name in (QUEUE_FIELD, PRIORITY_FIELD, SUBMISSION_FIELD) else name


def enqueue_form_class(job_type: JobType) -> type[forms.Form]:
    """A form class with one field per param of ``job_type``, then queue and priority."""
    fields: dict[str, forms.Field] = {}
    for name, field in job_type.params().fields.items():
        if field.read_only:
            continue
        fields[params_field_name(name)] = form_field_for(field)
    queues = selectors.queue_names() or list(settings.JOBADMIN_QUEUES)
    if job_type.queue not in queues:
        queues.append(job_type.queue)
    fields[QUEUE_FIELD] = forms.ChoiceField(
        label="Queue", choices=[(q, q) for q in queues], initial=job_type.queue, help_text="Where the job waits."
    )
    fields[PRIORITY_FIELD] = forms.IntegerField(
        label="Priority",
        initial=job_type.priority,
        min_value=-32768,
        max_value=32767,
        help_text="Higher runs first within a queue.",
    )
    fields[SUBMISSION_FIELD] = forms.CharField(
        widget=forms.HiddenInput, required=False, max_length=100, initial=lambda: str(uuid.uuid4())
    )
    return type(f"EnqueueForm_{job_type.name.replace('-', '_')}", (EnqueueForm,), fields)


class EnqueueForm(forms.Form):
    """Base of the generated forms; ``params()`` gives what ``job_enqueue`` expects."""

    job_type: JobType

    def params(self) -> dict[str, Any]:
        """Cleaned params, leaving out optional ones left empty so the serializer's default applies."""
        data: dict[str, Any] = {}
        for name, field in self.job_type.params().fields.items():
            if field.read_only:
                continue
            value = self.cleaned_data.get(params_field_name(name))
            if value in (None, "", []) and not field.required:
                continue
            if isinstance(value, date):
                value = value.isoformat()
            data[name] = value
        return data

    def add_params_errors(self, detail: Any) -> None:
        """Put the serializer's messages (``{"field": ["msg"]}``) on the matching form fields."""
        if not isinstance(detail, dict):
            self.add_error(None, [str(m) for m in (detail if isinstance(detail, list) else [detail])])
            return
        for name, messages in detail.items():
            messages = messages if isinstance(messages, list) else [messages]
            target = params_field_name(name)
            key = target if target in self.fields and target not in self.errors else None
            if key is None and target in self.errors:
                continue
            self.add_error(key, [str(m) for m in messages] if key else [f"{name}: {m}" for m in messages])


def build_enqueue_form(job_type: JobType, data: Any = None) -> EnqueueForm:
    form_class = enqueue_form_class(job_type)
    form = form_class(data=data)
    assert isinstance(form, EnqueueForm)
    form.job_type = job_type
    return form

from __future__ import annotations

from typing import Any

from django import forms

from dashboard.selectors.events import EventFilters
from destinations.models import EventType, Source


class SourceForm(forms.Form):
    name = forms.CharField(max_length=200)
    enabled = forms.BooleanField(required=False, initial=True)
    rate_limit_per_second = forms.IntegerField(
        min_value=1, max_value=1_000_000, initial=1000, label="Rate limit (requests/second)"
    )

    def __init__(self, *args: Any, instance: Source | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instance = instance

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        clash = Source.objects.filter(name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError(f"A source named {name!r} already exists.")
        return name


class EventFilterForm(forms.Form):
    type = forms.ChoiceField(required=False, choices=[("", "Any type"), *EventType.choices])
    source = forms.ModelChoiceField(
        required=False, queryset=Source.objects.order_by("name"), empty_label="Any source"
    )
    user = forms.CharField(required=False, label="User", help_text="userId or anonymousId")
    event = forms.CharField(required=False, label="Event name")
    since = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    until = forms.DateTimeField(
        required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def filters(self) -> EventFilters:
        if not self.is_valid():
            return EventFilters()
        data = self.cleaned_data
        return EventFilters(
            type=data["type"] or "",
            source_id=data["source"].pk if data["source"] else None,
            user=(data["user"] or "").strip(),
            event=(data["event"] or "").strip(),
            since=data["since"],
            until=data["until"],
        )


class SearchForm(forms.Form):
    q = forms.CharField(required=False, label="Search")

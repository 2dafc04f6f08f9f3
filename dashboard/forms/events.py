"""The Events list's filters."""

from __future__ import annotations

from django import forms

from dashboard.selectors.events import EventFilters
from destinations.models import EventType, Source


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

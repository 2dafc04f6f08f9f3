"""The source form: name, enabled, rate limit."""

from __future__ import annotations

from typing import Any

from django import forms

from destinations.models import Source


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

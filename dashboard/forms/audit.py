"""The audit log's filter."""

from __future__ import annotations

from django import forms

from destinations.models import AuditAction


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(
        required=False, choices=[("", "All actions"), *AuditAction.choices], label="Action"
    )

    def action_value(self) -> str:
        return self.cleaned_data["action"] if self.is_valid() else ""

"""The mapping rule form: the condition editor (``destinations.web.condition_forms``) plus the
Kana feature the rule records usage of."""

from __future__ import annotations

from typing import Any

from django import forms
from django.http import QueryDict

from destinations.connectors.kana.selectors import FeatureList
from destinations.web.condition_forms import ConditionsForm


class MappingRuleForm(ConditionsForm):
    """Event name, property conditions and the Kana feature the rule records usage of. The
    feature is a select of Kana's features when Kana answers, else a text input."""

    feature_id = forms.CharField(required=False, max_length=255, label="Feature")
    enabled = forms.BooleanField(
        required=False,
        initial=True,
        label="Enabled",
        help_text="A disabled rule matches nothing and is not applied to stored events.",
    )

    field_order = ["event_name", "feature_id", "enabled"]

    def __init__(
        self,
        data: QueryDict | None = None,
        *,
        features: FeatureList,
        current_feature: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(data, **kwargs)
        # Suggestions from the event names seen among unmapped events (the page's datalist).
        self.fields["event_name"].widget.attrs.update(list="unmapped-event-names")
        self.features = features
        field = self.fields["feature_id"]
        if features.available:
            choices = [("", "Choose a Kana feature…")]
            choices += [(f.id, f.label) for f in features.features]
            known = {f.id for f in features.features}
            if current_feature and current_feature not in known:
                # A feature deleted in Kana since: keep it selectable rather than lose it.
                choices.append((current_feature, f"{current_feature} (not in Kana's list)"))
            field.widget = forms.Select(choices=choices)
        else:
            field.widget = forms.TextInput(attrs={"placeholder": "feature id, e.g. exports"})
            field.help_text = features.problem

    def feature(self) -> str:
        if self.is_bound and self.is_valid():
            return str(self.cleaned_data["feature_id"]).strip()
        return str(self.data.get("feature_id", "")).strip() if self.is_bound else ""

    def is_enabled(self) -> bool:
        return bool(self.cleaned_data.get("enabled")) if self.is_valid() else True

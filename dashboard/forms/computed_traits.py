"""The computed trait form: what to compute from which event, over which window, and where to
sync it. Property conditions use the mapping rules' rows (path, operator, value)."""

from __future__ import annotations

from typing import Any

from django import forms

from destinations.audiences.computed_traits import KINDS
from destinations.audiences.definition import LEAF_OPERATORS
from destinations.audiences.services import SYNC_KINDS
from destinations.models import Destination

CONDITION_ROWS = 3


class ComputedTraitForm(forms.Form):
    name = forms.CharField(
        max_length=200,
        help_text="Its key is the name snake_cased (Seats bought -> seats_bought) and cannot "
        "change once created: destinations key on it.",
    )
    kind = forms.ChoiceField(choices=list(KINDS.items()), label="Value")
    event = forms.CharField(max_length=255, label="Event name")
    property = forms.CharField(
        max_length=255,
        required=False,
        help_text="For a first or last value: its path, like properties.plan",
    )
    within_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label="Within the last (days)",
        help_text="Empty: all of the user's history",
    )  # fmt: skip
    destinations = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Refiner and webhooks get the value as a trait; Kana keeps only name, email "
        "and billing id, so it is not offered.",
    )

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = Destination.objects.filter(kind__in=SYNC_KINDS).order_by("name")
        field = self.fields["destinations"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(str(d.pk), d.name) for d in choices]
        if editing:
            self.fields["name"].disabled = True
        for n in range(1, CONDITION_ROWS + 1):
            self.fields[f"where_path_{n}"] = forms.CharField(
                max_length=255, required=False, label=f"Condition {n}: property path"
            )
            self.fields[f"where_op_{n}"] = forms.ChoiceField(
                choices=[("", "—"), *LEAF_OPERATORS.items()], required=False, label="operator"
            )
            self.fields[f"where_value_{n}"] = forms.CharField(
                max_length=255, required=False, label="value"
            )

    def definition(self) -> dict[str, Any]:
        data = self.cleaned_data
        where = []
        for n in range(1, CONDITION_ROWS + 1):
            path, op = data.get(f"where_path_{n}", "").strip(), data.get(f"where_op_{n}", "")
            if path or op:
                where.append({"path": path, "op": op, "value": data.get(f"where_value_{n}", "")})
        definition: dict[str, Any] = {
            "kind": data["kind"],
            "event": data["event"],
            "where": where,
            "within_days": data.get("within_days"),
        }
        if data.get("property"):
            definition["property"] = data["property"]
        return definition

    def destination_ids(self) -> list[int]:
        return [int(pk) for pk in self.cleaned_data.get("destinations", [])]


def initial_of(trait: Any) -> dict[str, Any]:
    definition = trait.definition
    initial: dict[str, Any] = {
        "name": trait.name,
        "kind": definition.get("kind"),
        "event": definition.get("event"),
        "property": definition.get("property", ""),
        "within_days": definition.get("within_days"),
        "destinations": [str(pk) for pk in trait.targets.values_list("destination_id", flat=True)],
    }
    for n, leaf in enumerate(definition.get("where") or [], start=1):
        initial |= {
            f"where_path_{n}": leaf.get("path"),
            f"where_op_{n}": leaf.get("op"),
            f"where_value_{n}": leaf.get("value", ""),
        }
    return initial

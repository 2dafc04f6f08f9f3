"""Forms for resolving user conflicts: search, merge (which value of each field to keep) and
delete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms
from django.forms.boundfield import BoundWidget

from destinations.identity.billing_ids import billing_id_problem
from destinations.models import Profile
from destinations.people.delete import DeleteOptions
from destinations.people.merge import CHOOSABLE, default_survivor

FIELD_LABELS = {"user_id": "User id", "email": "Email", "name": "Name", "billing_id": "Billing id"}


class ConflictSearchForm(forms.Form):
    """Both boxes' searches travel together, so a page URL says what both boxes show."""

    email_q = forms.CharField(required=False, max_length=320, label="Search emails")
    user_q = forms.CharField(required=False, max_length=320, label="Search users")

    def searches(self) -> tuple[str, str]:
        if not self.is_valid():
            return "", ""
        return self.cleaned_data["email_q"].strip(), self.cleaned_data["user_q"].strip()


@dataclass(frozen=True)
class ChoiceCell:
    radio: BoundWidget
    value: Any
    problem: str | None = None  # a billing id Kana would refuse


@dataclass(frozen=True)
class ChoiceRow:
    name: str
    label: str
    cells: list[ChoiceCell]


def keep_field(name: str) -> str:
    return f"keep_{name}"


class MergeForm(forms.Form):
    """Which user survives, which users take part, and whose value each field keeps.

    Choices are profile ids, in the order the page shows the users (oldest first)."""

    survivor = forms.TypedChoiceField(coerce=int, widget=forms.RadioSelect, label="Survivor")
    include = forms.TypedMultipleChoiceField(
        coerce=int, widget=forms.CheckboxSelectMultiple, label="Take part in the merge"
    )
    delete_in_refiner = forms.BooleanField(
        required=False, label="Also delete the merged-away contacts from Refiner"
    )

    def __init__(self, data: Mapping[str, Any] | None = None, *, profiles: Sequence[Profile]):
        super().__init__(data)
        self.profiles = list(profiles)
        ids = [(p.pk, str(p)) for p in self.profiles]
        survivor_field = self.fields["survivor"]
        include_field = self.fields["include"]
        assert isinstance(survivor_field, forms.TypedChoiceField)
        assert isinstance(include_field, forms.TypedMultipleChoiceField)
        survivor_field.choices = ids
        include_field.choices = ids
        for name in CHOOSABLE:
            self.fields[keep_field(name)] = forms.TypedChoiceField(
                coerce=int,
                required=False,
                choices=ids,
                widget=forms.RadioSelect,
                label=FIELD_LABELS[name],
            )

    @classmethod
    def defaults(cls, profiles: Sequence[Profile]) -> dict[str, Any]:
        """Kana's rule for the survivor (created first); each field keeps the survivor's value,
        else the first other user's that has one, as plan_merge does without choices."""
        survivor = default_survivor(profiles)
        data: dict[str, Any] = {
            "survivor": str(survivor.pk),
            "include": [str(p.pk) for p in profiles],
        }
        ordered = [survivor, *(p for p in profiles if p.pk != survivor.pk)]
        for name in CHOOSABLE:
            source = next((p for p in ordered if getattr(p, name)), survivor)
            data[keep_field(name)] = str(source.pk)
        return data

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        survivor, include = cleaned.get("survivor"), cleaned.get("include") or []
        if survivor is not None and survivor not in include:
            self.add_error("include", "The survivor must take part in the merge.")
        elif len(include) < 2:
            self.add_error("include", "Choose at least two users to merge.")
        return cleaned

    def survivor_profile(self) -> Profile:
        return self.by_id()[self.cleaned_data["survivor"]]

    def absorbed_profiles(self) -> list[Profile]:
        survivor = self.cleaned_data["survivor"]
        by_id = self.by_id()
        return [by_id[pk] for pk in self.cleaned_data["include"] if pk != survivor]

    def choices(self) -> dict[str, int]:
        """The field -> profile id choices for plan_merge and profile_merge."""
        chosen = {name: self.cleaned_data.get(keep_field(name)) for name in CHOOSABLE}
        return {name: pk for name, pk in chosen.items() if pk is not None}

    def by_id(self) -> dict[int, Profile]:
        return {p.pk: p for p in self.profiles}

    def choice_rows(self) -> list[ChoiceRow]:
        """Per field, a radio per user beside that user's value, for the side-by-side table."""
        rows = []
        for name in CHOOSABLE:
            radios = list(self[keep_field(name)])
            cells = [
                ChoiceCell(
                    radio=radio,
                    value=getattr(profile, name),
                    problem=billing_id_problem(profile.billing_id)
                    if name == "billing_id"
                    else None,
                )
                for radio, profile in zip(radios, self.profiles, strict=True)
            ]
            rows.append(ChoiceRow(name=name, label=FIELD_LABELS[name], cells=cells))
        return rows

    def survivor_radios(self) -> list[BoundWidget]:
        return list(self["survivor"])

    def include_boxes(self) -> list[BoundWidget]:
        return list(self["include"])

    def current_survivor(self) -> int | None:
        value = self["survivor"].value()
        try:
            return int(value)
        except (TypeError, ValueError):
            return None


class DeleteUserForm(forms.Form):
    delete_events = forms.BooleanField(
        required=False,
        label="Also delete this user's events",
        help_text="With their deliveries. Without this, the events stay, attached to no user.",
    )
    suppress = forms.BooleanField(
        required=False,
        label="Suppress future events for this userId and email",
        help_text="Later calls for them are answered 200 and dropped, so the user does not "
        "come back.",
    )
    delete_in_refiner = forms.BooleanField(
        required=False,
        label="Delete the contact in Refiner",
        help_text="In every enabled Refiner destination; the outcome is shown in the audit log.",
    )

    def options(self) -> DeleteOptions:
        return DeleteOptions(
            delete_events=self.cleaned_data["delete_events"],
            suppress=self.cleaned_data["suppress"],
            delete_in_refiner=self.cleaned_data["delete_in_refiner"],
        )

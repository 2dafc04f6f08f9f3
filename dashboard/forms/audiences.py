"""The audience editor: a name (its key follows), users or accounts, conditions combined with
all of / any of with one level of groups, the destinations to sync to and, for Refiner, a
manual segment to keep in step.

The conditions are a small tree rebuilt from the posted fields on every request, not a formset.
A condition's fields are named after its place: ``c3-path`` is the third condition's path,
``c3-2-path`` the second condition inside the third (a group). An event condition's property
rows are ``c3-wpath``, ``c3-wop`` and ``c3-wvalue``, repeated as the mapping rules' rows are.
Submit buttons named ``add``, ``remove``, ``add_where`` and ``remove_where`` change the tree
and the form comes back with the change (htmx swaps only the conditions; without JavaScript the
whole page). Places are renumbered on every render.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.http import QueryDict

from dashboard.selectors.audiences import SegmentChoices
from destinations.audiences.definition import MATCHES, MAX_CONDITIONS
from destinations.audiences.evaluate import ACCOUNT_FIELDS, USER_FIELDS
from destinations.audiences.services import SYNC_KINDS
from destinations.models import Audience, AudienceSubject, Destination
from destinations.web.condition_forms import ROW_LIMIT, ConditionRow, rows_from_conditions

LEAF_TYPES = {
    "trait": "User trait",
    "event": "Event",
    "account": "Account trait",
    "audience": "Audience",
}
# What each subject's conditions may be: an account audience has no user traits.
SUBJECT_TYPES: dict[str, tuple[str, ...]] = {
    AudienceSubject.USERS: ("trait", "event", "account", "audience"),
    AudienceSubject.ACCOUNTS: ("account", "event", "audience"),
}
NO_VALUE = ("exists", "is_true", "is_false")
COUNT_CHOICES = {
    "at_least": "at least",
    "at_most": "at most",
    "exactly": "exactly",
    "none": "has not performed",
}
PLACE = re.compile(r"^c(\d{1,3})(?:-(\d{1,3}))?-type$")
# The engine's messages number conditions: "condition 3: condition 2: where 1: ..."
NUMBERED = re.compile(r"^condition (\d+): (?:condition (\d+): )?(?:where (\d+): )?")
SEGMENT = re.compile(r"^[A-Za-z0-9-]{1,100}$")
KANA_REASON = (
    "Kana keeps only name, email and billing id of a user's traits, so an audience would be "
    "dropped there"
)


# --- paths as operators type them -----------------------------------------------------------


def subject_fields(subject: str) -> tuple[str, ...]:
    return ACCOUNT_FIELDS if subject == AudienceSubject.ACCOUNTS else USER_FIELDS


def full_trait_path(typed: str, fields: Sequence[str]) -> str:
    """``plan`` means ``traits.plan``; ``email`` (a field of its own) and a path starting with
    ``traits.`` are taken as written."""
    path = typed.strip()
    if not path or path in fields or path.split(".", 1)[0] == "traits":
        return path
    return f"traits.{path}"


def shown_trait_path(path: str, fields: Sequence[str]) -> str:
    """The inverse of ``full_trait_path`` wherever one exists."""
    rest = path[len("traits.") :] if path.startswith("traits.") else ""
    if rest and rest not in fields and rest.split(".", 1)[0] != "traits":
        return rest
    return path


# --- the tree of conditions -----------------------------------------------------------------


@dataclass
class Leaf:
    """One condition as shown and as typed (every value is text until the engine reads it)."""

    type: str
    place: str = ""
    path: str = ""
    op: str = "equals"
    value: str = ""
    event: str = ""
    where: list[ConditionRow] = field(default_factory=list)
    count: str = "at_least"
    times: str = "1"
    within: str = ""
    audience: str = ""
    member: str = "in"
    invalid: bool = False
    audience_options: list[tuple[str, str]] = field(default_factory=list)
    is_group = False

    @property
    def label(self) -> str:
        return LEAF_TYPES.get(self.type, self.type)

    @property
    def needs_value(self) -> bool:
        return self.op not in NO_VALUE

    def condition(self, subject: str) -> dict[str, Any]:
        if self.type == "event":
            return {
                "type": "event",
                "event": self.event,
                "where": [row.as_condition() for row in self.where if not row.is_blank],
                "count": self.count,
                "times": "0" if self.count == "none" else self.times,
                "within_days": self.within or None,
            }
        if self.type == "audience":
            return {"type": "audience", "audience": self.audience, "in": self.member != "not_in"}
        fields = ACCOUNT_FIELDS if self.type == "account" else subject_fields(subject)
        leaf: dict[str, Any] = {
            "type": self.type,
            "path": full_trait_path(self.path, fields),
            "op": self.op,
        }
        if self.needs_value:
            leaf["value"] = self.value
        return leaf


@dataclass
class Group:
    match: str = "all"
    items: list[Leaf] = field(default_factory=list)
    place: str = ""
    invalid: bool = False
    type = "group"
    is_group = True

    def condition(self, subject: str) -> dict[str, Any]:
        return {
            "type": "group",
            "match": self.match,
            "conditions": [leaf.condition(subject) for leaf in self.items],
        }


def default_leaf(subject: str) -> Leaf:
    return Leaf(type=SUBJECT_TYPES.get(subject, SUBJECT_TYPES[AudienceSubject.USERS])[0])


class ConditionBuilder:
    """Conditions combined with all of / any of; a group holds conditions, not groups."""

    def __init__(self, subject: str, match: str = "all", items: list[Leaf | Group] | None = None):
        self.subject = subject
        self.match = match if match in MATCHES else "all"
        self.items: list[Leaf | Group] = items if items is not None else [default_leaf(subject)]
        self.acted = False
        self.fit_subject()
        self.renumber()

    def fit_subject(self) -> None:
        """An account audience has no user traits: a user trait condition left blank (the one a
        new form starts with) becomes an account trait when accounts are chosen."""
        if self.subject != AudienceSubject.ACCOUNTS:
            return
        for item in self.items:
            for leaf in item.items if isinstance(item, Group) else [item]:
                if leaf.type == "trait" and not leaf.path and not leaf.value:
                    leaf.type = "account"

    # --- reading --------------------------------------------------------------------------

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any], subject: str) -> ConditionBuilder:
        items: list[Leaf | Group] = []
        for condition in _conditions(definition):
            if condition.get("type") == "group":
                inner = [leaf_of(c, subject) for c in _conditions(condition)]
                items.append(Group(match=str(condition.get("match", "all")), items=inner))
            else:
                items.append(leaf_of(condition, subject))
        return cls(subject, str(definition.get("match", "all")), items)

    @classmethod
    def from_post(cls, data: QueryDict, subject: str) -> ConditionBuilder:
        top: set[int] = set()
        nested: dict[int, set[int]] = {}
        for key in data:
            found = PLACE.match(key)
            if found is None:
                continue
            outer, inner = int(found.group(1)), found.group(2)
            if inner is None:
                top.add(outer)
            else:
                nested.setdefault(outer, set()).add(int(inner))
        items: list[Leaf | Group] = []
        for number in sorted(top)[:MAX_CONDITIONS]:
            place = f"c{number}"
            kind = data.get(f"{place}-type", "")
            if kind == "group":
                leaves = [
                    posted_leaf(data, f"{place}-{inner}")
                    for inner in sorted(nested.get(number, ()))[:MAX_CONDITIONS]
                ]
                group = Group(
                    match=str(data.get(f"{place}-match", "all")),
                    items=[leaf for leaf in leaves if leaf is not None],
                    place=place,
                )
                items.append(group)
            elif (leaf := posted_leaf(data, place)) is not None:
                items.append(leaf)
        builder = cls(subject, str(data.get("match", "all")), items)
        builder.acted = builder.act(data)
        builder.renumber()
        return builder

    # --- changing -------------------------------------------------------------------------

    def act(self, data: QueryDict) -> bool:
        """Apply the button pressed, if it was one of the builder's. Places are the posted
        ones here: renumbering comes after."""
        if "add" in data:
            self.add(str(data.get("add", "")))
            return True
        if "remove" in data:
            self.remove(str(data.get("remove", "")))
            return True
        if "add_where" in data:
            leaf = self.leaf_at(str(data.get("add_where", "")))
            if leaf is not None and leaf.type == "event" and len(leaf.where) < ROW_LIMIT:
                leaf.where.append(ConditionRow())
            return True
        if "remove_where" in data:
            place, _, number = str(data.get("remove_where", "")).partition(":")
            leaf = self.leaf_at(place)
            if leaf is not None and number.isdigit() and 1 <= int(number) <= len(leaf.where):
                del leaf.where[int(number) - 1]
            return True
        return False

    def add(self, what: str) -> None:
        place, _, kind = what.rpartition(":")
        allowed = SUBJECT_TYPES.get(self.subject, ())
        if not place:
            if len(self.items) >= MAX_CONDITIONS:
                return
            if kind == "group":
                self.items.append(Group(items=[default_leaf(self.subject)]))
            elif kind in allowed:
                self.items.append(Leaf(type=kind))
            return
        group = next((g for g in self.groups() if g.place == place), None)
        if group is not None and kind in allowed and len(group.items) < MAX_CONDITIONS:
            group.items.append(Leaf(type=kind))

    def remove(self, place: str) -> None:
        self.items = [item for item in self.items if item.place != place]
        for group in self.groups():
            group.items = [leaf for leaf in group.items if leaf.place != place]

    def groups(self) -> list[Group]:
        return [item for item in self.items if isinstance(item, Group)]

    def leaf_at(self, place: str) -> Leaf | None:
        for item in self.items:
            if isinstance(item, Leaf) and item.place == place:
                return item
            if isinstance(item, Group):
                for leaf in item.items:
                    if leaf.place == place:
                        return leaf
        return None

    def renumber(self) -> None:
        for number, item in enumerate(self.items, start=1):
            item.place = f"c{number}"
            if isinstance(item, Group):
                for inner, leaf in enumerate(item.items, start=1):
                    leaf.place = f"c{number}-{inner}"

    # --- what it means --------------------------------------------------------------------

    def definition(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "conditions": [item.condition(self.subject) for item in self.items],
        }

    def mark_invalid(self, message: str) -> None:
        """Highlight the condition (and property row) an engine message numbers."""
        numbered = NUMBERED.match(message)
        if numbered is None:
            return
        outer, inner, where = (int(n) if n else None for n in numbered.groups())
        if outer is None or not 1 <= outer <= len(self.items):
            return
        item: Leaf | Group = self.items[outer - 1]
        if isinstance(item, Group) and inner is not None and 1 <= inner <= len(item.items):
            item = item.items[inner - 1]
        item.invalid = True
        if isinstance(item, Leaf) and where is not None:
            filled = [row for row in item.where if not row.is_blank]
            if 1 <= where <= len(filled):
                filled[where - 1].invalid = True

    def offer_audiences(self, choices: Sequence[tuple[int, str]]) -> None:
        """The audiences an audience condition may pick; one already chosen that is not among
        them (deleted, or of the other subject) stays shown, so the engine can say why."""
        options = [(str(pk), name) for pk, name in choices]
        known = {pk for pk, _ in options}
        for item in self.items:
            for leaf in item.items if isinstance(item, Group) else [item]:
                if leaf.type != "audience":
                    continue
                leaf.audience_options = list(options)
                if leaf.audience and leaf.audience not in known:
                    leaf.audience_options.append((leaf.audience, f"#{leaf.audience}"))

    @property
    def add_types(self) -> list[tuple[str, str]]:
        return [(kind, LEAF_TYPES[kind]) for kind in SUBJECT_TYPES.get(self.subject, ())]

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_CONDITIONS


def _conditions(group: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    conditions = group.get("conditions")
    return [c for c in conditions if isinstance(c, Mapping)] if isinstance(conditions, list) else []


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def leaf_of(condition: Mapping[str, Any], subject: str) -> Leaf:
    """A stored condition as the editor shows it."""
    kind = str(condition.get("type", ""))
    if kind == "event":
        where = condition.get("where")
        return Leaf(
            type="event",
            event=_text(condition.get("event")),
            where=rows_from_conditions(where if isinstance(where, list) else []),
            count=_text(condition.get("count", "at_least")),
            times=_text(condition.get("times", 1)),
            within=_text(condition.get("within_days")),
        )
    if kind == "audience":
        return Leaf(
            type="audience",
            audience=_text(condition.get("audience")),
            member="in" if condition.get("in", True) else "not_in",
        )
    fields = ACCOUNT_FIELDS if kind == "account" else subject_fields(subject)
    return Leaf(
        type=kind,
        path=shown_trait_path(_text(condition.get("path")), fields),
        op=_text(condition.get("op", "equals")),
        value=_text(condition.get("value")),
    )


def posted_leaf(data: QueryDict, place: str) -> Leaf | None:
    kind = data.get(f"{place}-type", "")
    if kind not in LEAF_TYPES:
        return None  # only a forged form names another kind: it is left out

    def text(name: str, default: str = "") -> str:
        return str(data.get(f"{place}-{name}", default)).strip()

    paths = data.getlist(f"{place}-wpath")[:ROW_LIMIT]
    ops, values = data.getlist(f"{place}-wop"), data.getlist(f"{place}-wvalue")
    where = [
        ConditionRow(
            path=path.strip(),
            op=ops[i] if i < len(ops) else "equals",
            value=values[i].strip() if i < len(values) else "",
        )
        for i, path in enumerate(paths)
    ]
    return Leaf(
        type=kind,
        place=place,
        path=text("path"),
        op=text("op", "equals"),
        value=text("value"),
        event=text("event"),
        where=where,
        count=text("count", "at_least"),
        times=text("times"),
        within=text("within"),
        audience=text("audience"),
        member=text("member", "in"),
    )


# --- the form -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationOption:
    destination: Destination
    checked: bool
    reason: str  # why it cannot be chosen; empty when it can
    segment: forms.BoundField | None  # Refiner: the manual segment kept in step
    segment_problem: str = ""


def segment_field_name(destination_id: int) -> str:
    return f"segment_{destination_id}"


class AudienceForm(forms.Form):
    """Name, subject and destinations; the conditions are the ``ConditionBuilder``'s."""

    name = forms.CharField(
        max_length=200,
        label="Name",
        help_text="Its key (the name snake_cased) is the trait destinations receive. The key "
        "cannot change once created: destinations key on it.",
    )
    subject = forms.ChoiceField(
        choices=AudienceSubject.choices,
        initial=AudienceSubject.USERS,
        widget=forms.RadioSelect,
        label="Members are",
        help_text="Fixed once created.",
    )
    destinations = forms.TypedMultipleChoiceField(
        coerce=int, required=False, label="Sync to", widget=forms.CheckboxSelectMultiple
    )

    def __init__(
        self,
        data: QueryDict | None = None,
        *,
        audience: Audience | None = None,
        destinations: Sequence[Destination],
        **kwargs: Any,
    ) -> None:
        super().__init__(data, **kwargs)
        self.audience = audience
        self.all_destinations = list(destinations)
        syncable = [d for d in self.all_destinations if d.kind in SYNC_KINDS]
        chooser = self.fields["destinations"]
        assert isinstance(chooser, forms.TypedMultipleChoiceField)
        chooser.choices = [(d.pk, d.name) for d in syncable]
        if audience is not None:
            self.fields["subject"].disabled = True
            self.fields["subject"].initial = audience.subject
        self.segment_problems: dict[int, str] = {}
        chosen = self.initial.get("segments", {})
        for destination in syncable:
            if destination.kind == "refiner":
                name = segment_field_name(destination.pk)
                self.fields[name] = forms.CharField(
                    required=False,
                    max_length=100,
                    label=f"Refiner segment for {destination.name}",
                    initial=str(chosen.get(destination.pk, "")),
                    widget=forms.TextInput(attrs={"placeholder": "segment uuid (optional)"}),
                )

    def offer_segments(self, found: Mapping[int, SegmentChoices]) -> None:
        """Pickers of Refiner's manual segments where Refiner answered; elsewhere the text
        field stays, with the reason. Only for showing: a segment is not checked against
        Refiner's list (it may have changed since), only its form."""
        for pk, segments in found.items():
            name = segment_field_name(pk)
            if name not in self.fields:
                continue
            if not segments.available:
                self.segment_problems[pk] = segments.problem
                continue
            choices = [("", "No segment"), *segments.segments]
            known = {uuid for uuid, _ in choices}
            current = str(self[name].value() or "")
            if current and current not in known:
                choices.append((current, f"{current} (not in Refiner's list)"))
            self.fields[name].widget = forms.Select(choices=choices)

    def subject_value(self) -> str:
        if self.audience is not None:
            return self.audience.subject
        posted = self.data.get("subject") if self.is_bound else self.initial.get("subject")
        return posted if posted in AudienceSubject.values else AudienceSubject.USERS

    def typed_name(self) -> str:
        return str(self.data.get("name", "")).strip() if self.is_bound else ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name, value in list(cleaned.items()):
            if name.startswith("segment_") and value:
                value = value.strip()
                if not SEGMENT.match(value):
                    self.add_error(name, "A segment uuid is letters, digits and dashes.")
                cleaned[name] = value
        return cleaned

    def chosen_destinations(self) -> list[int]:
        return list(self.cleaned_data.get("destinations") or [])

    def chosen_segments(self) -> dict[int, str]:
        chosen = set(self.chosen_destinations())
        found: dict[int, str] = {}
        for destination in self.all_destinations:
            value = self.cleaned_data.get(segment_field_name(destination.pk)) or ""
            if destination.pk in chosen and value:
                found[destination.pk] = value
        return found

    def destination_options(self) -> list[DestinationOption]:
        if self.is_bound:
            posted = self.data.getlist("destinations") if isinstance(self.data, QueryDict) else []
            checked = {str(v) for v in posted}
        else:
            checked = {str(v) for v in self.initial.get("destinations", [])}
        options = []
        for destination in self.all_destinations:
            name = segment_field_name(destination.pk)
            options.append(
                DestinationOption(
                    destination=destination,
                    checked=str(destination.pk) in checked,
                    reason=unsyncable_reason(destination),
                    segment=self[name] if name in self.fields else None,
                    segment_problem=self.segment_problems.get(destination.pk, ""),
                )
            )
        return options


def unsyncable_reason(destination: Destination) -> str:
    if destination.kind in SYNC_KINDS:
        return ""
    if destination.kind == "kana":
        return KANA_REASON
    return f"audiences are synced to Refiner and webhooks, not {destination.get_kind_display()}"


class DeleteAudienceForm(forms.Form):
    tell = forms.ChoiceField(
        choices=[
            ("yes", "Yes: first send each member the trait set to false, as if they left"),
            ("no", "No: delete it quietly; destinations keep the trait as last sent"),
        ],
        initial="yes",
        widget=forms.RadioSelect,
        label="Tell the members they left?",
    )

    def tell_members(self) -> bool:
        return bool(self.cleaned_data.get("tell") == "yes")


class MemberSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=320, label="Search members")

"""The Replay history form: a time range (a preset or from/to), optional narrowing by source,
call type and event name, and whether to include events the destination already received.

Everything typed is checked here or by the engine's ``ReplayDefinition``; what either refuses
comes back as a form error, never an exception."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms

from dashboard.selectors.replays import moment_range
from destinations.models import Destination
from destinations.replay.definition import (
    MAX_NAMES,
    REPLAYABLE_TYPES,
    InvalidDefinition,
    ReplayDefinition,
)
from destinations.replay.selection import replayable_sources

NAME_LENGTH = 255  # Event.event and Event.name hold no more
CUSTOM = "custom"


@dataclass(frozen=True)
class RangePreset:
    key: str
    label: str
    span: timedelta | None  # None: from the first stored event


PRESETS = {
    p.key: p
    for p in (
        RangePreset("24h", "Last 24 h", timedelta(days=1)),
        RangePreset("7d", "Last 7 days", timedelta(days=7)),
        RangePreset("30d", "Last 30 days", timedelta(days=30)),
        RangePreset("all", "Everything", None),
    )
}
DEFAULT_RANGE = "24h"
# What "Send the last 30 days of history to it" on a new destination's page fills in.
NEW_DESTINATION_RANGE = "30d"
RANGE_CHOICES = [(p.key, p.label) for p in PRESETS.values()] + [(CUSTOM, "From … to …")]


def moment_widget() -> forms.DateTimeInput:
    return forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


class ReplayForm(forms.Form):
    range = forms.ChoiceField(
        choices=RANGE_CHOICES, initial=DEFAULT_RANGE, widget=forms.RadioSelect, label="Events from"
    )
    since = forms.DateTimeField(
        required=False,
        label="From",
        widget=moment_widget(),
        help_text="UTC, by the event's timestamp. Empty: from the first stored event.",
    )
    until = forms.DateTimeField(
        required=False,
        label="To",
        widget=moment_widget(),
        help_text="UTC, not included. Empty: now.",
    )
    sources = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every source.",
    )
    types = forms.MultipleChoiceField(
        required=False,
        label="Call types",
        choices=[(t, t) for t in REPLAYABLE_TYPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every type the destination takes (alias calls are never sent).",
    )
    names = forms.CharField(
        required=False,
        label="Event names",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=f"One per line, at most {MAX_NAMES}: a track call's event or a page or "
        "screen name, exactly. Empty: any.",
    )
    include_received = forms.BooleanField(
        required=False,
        label="Also send events this destination already received",
        help_text="Off: only events it never got delivered: stored before it existed, "
        "filtered out then, skipped or failed.",
    )

    def __init__(
        self, *args: Any, destination: Destination, now: datetime | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.now = now or datetime.now(UTC)
        self.definition: ReplayDefinition | None = None
        sources = replayable_sources(destination).order_by("name").values_list("pk", "name")
        field = self.fields["sources"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(str(pk), name) for pk, name in sources]

    def clean_names(self) -> tuple[str, ...]:
        typed = self.cleaned_data.get("names") or ""
        names = tuple(dict.fromkeys(line.strip() for line in typed.splitlines() if line.strip()))
        if len(names) > MAX_NAMES:
            raise forms.ValidationError(f"At most {MAX_NAMES} event names ({len(names)} given).")
        too_long = [name for name in names if len(name) > NAME_LENGTH]
        if too_long:
            raise forms.ValidationError(
                f"An event name has at most {NAME_LENGTH} characters "
                f"(one given has {len(too_long[0])})."
            )
        return names

    def clean_since(self) -> datetime | None:
        return in_utc(self.cleaned_data.get("since"))

    def clean_until(self) -> datetime | None:
        return in_utc(self.cleaned_data.get("until"))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        since, until = self.time_range(data)
        try:
            self.definition = ReplayDefinition(
                since=since,
                until=until,
                source_ids=tuple(int(pk) for pk in data.get("sources") or ()),
                types=tuple(data.get("types") or ()),
                names=tuple(data.get("names") or ()),
                include_received=bool(data.get("include_received")),
            )
        except InvalidDefinition as exc:
            raise forms.ValidationError(str(exc)) from exc
        return data

    def time_range(self, data: dict[str, Any]) -> tuple[datetime | None, datetime]:
        """[since, until): a preset counts back from now; From/To are used as typed."""
        chosen = data.get("range") or DEFAULT_RANGE
        preset = PRESETS.get(chosen)
        if preset is not None:
            return (self.now - preset.span if preset.span else None), self.now
        return data.get("since"), data.get("until") or self.now

    def range_label(self) -> str:
        """The chosen range in words, for the preview: "from the last 7 days"."""
        if self.definition is None:
            return ""
        preset = PRESETS.get(self.cleaned_data.get("range") or "")
        if preset is not None:
            return f"from the {preset.label.lower()}" if preset.span else "from any time"
        return moment_range(self.definition.since, self.definition.until)


def in_utc(moment: datetime | None) -> datetime | None:
    """A typed moment in UTC; one so near the ends of the calendar that it has no UTC time
    (year 1 at +14:00) is a form error, not an overflow in the database adapter."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise forms.ValidationError("That moment is outside the calendar in UTC.") from None


def range_from_query(value: str | None) -> str:
    """The preset a link asks for (``?range=30d``), if it is one."""
    return value if value in PRESETS else DEFAULT_RANGE

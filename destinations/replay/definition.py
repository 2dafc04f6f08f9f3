"""What an operator asks a replay to send: a time range and optional narrowing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from destinations.models import EventType, Replay

# Call types a replay may send; alias is never sent to a destination.
REPLAYABLE_TYPES = tuple(t.value for t in EventType if t != EventType.ALIAS)
MAX_NAMES = 50
MAX_NAME_CHARS = 255  # as the event table's name columns
MAX_ID = 2**63


class InvalidDefinition(ValueError):
    """The definition cannot be run; the message says why, in the operator's words."""


@dataclass(frozen=True)
class ReplayDefinition:
    until: datetime
    since: datetime | None = None
    source_ids: tuple[int, ...] = ()
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    include_received: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.since is not None and self.since >= self.until:
            raise InvalidDefinition("The start of the range must be before its end.")
        unknown = sorted(set(self.types) - set(REPLAYABLE_TYPES))
        if unknown:
            raise InvalidDefinition(f"Unknown call type: {', '.join(unknown)}.")
        if len(self.names) > MAX_NAMES:
            raise InvalidDefinition(f"At most {MAX_NAMES} event names.")
        for name in self.names:
            check_name(name)
        for source_id in self.source_ids:
            if not 0 < source_id < MAX_ID:
                raise InvalidDefinition(f"No source has the id {source_id}.")

    def as_params(self) -> dict[str, Any]:
        """For the job's params: what the replay was asked to send, as the audit log shows it."""
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat(),
            "source_ids": list(self.source_ids),
            "types": list(self.types),
            "names": list(self.names),
            "include_received": self.include_received,
        }

    @classmethod
    def of(cls, replay: Replay) -> ReplayDefinition:
        return cls(
            since=replay.since,
            until=replay.until,
            source_ids=tuple(int(s) for s in replay.source_ids),
            types=tuple(str(t) for t in replay.types),
            names=tuple(str(n) for n in replay.names),
            include_received=replay.include_received,
        )


def check_name(name: str) -> None:
    """An event name is matched against stored names: one no stored event can have (too long,
    a NUL, text that is not Unicode) is refused with the reason rather than by the database."""
    shown = name[:40].encode("utf-8", "backslashreplace").decode("utf-8")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidDefinition(
            f"Event name {shown!r}… is longer than {MAX_NAME_CHARS} characters."
        )
    if "\x00" in name:
        raise InvalidDefinition(f"Event name {shown!r} contains a NUL character.")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDefinition(f"Event name {shown!r} is not valid Unicode text.") from None

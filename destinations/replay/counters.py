"""A replay's tallies: each lane keeps its own (no two writers on one row); the job shows
their sum."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

NUMBERS = ("scanned", "planned", "delivered", "failed", "retrying")
# Reasons shown per replay; the rest are summed under one line.
MAX_REASONS = 20
OTHER_REASONS = "other reasons"


def empty() -> dict[str, Any]:
    return {**dict.fromkeys(NUMBERS, 0), "skipped": {}}


def add(counters: dict[str, Any], **numbers: int) -> None:
    for name, value in numbers.items():
        counters[name] = int(counters.get(name, 0)) + value


def add_skipped(counters: dict[str, Any], reasons: Mapping[str, int]) -> None:
    skipped: dict[str, int] = counters.setdefault("skipped", {})
    for reason, count in reasons.items():
        key = reason if reason in skipped or len(skipped) < MAX_REASONS else OTHER_REASONS
        skipped[key] = skipped.get(key, 0) + count


def total(lanes: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    summed = empty()
    for counters in lanes:
        add(summed, **{name: int(counters.get(name, 0)) for name in NUMBERS})
        add_skipped(summed, counters.get("skipped") or {})
    summed["skipped"] = dict(sorted(summed["skipped"].items(), key=lambda item: -item[1]))
    summed["skipped_total"] = sum(summed["skipped"].values())
    return summed

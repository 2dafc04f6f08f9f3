"""The audiences benchmark's constants, its targets, the shape of its data, the audiences it
defines and the plan of a run."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from measure.paths import ROOT

# The Django roles run as child processes of the entry point, with the backend's environment.
SELF = (sys.executable, str(ROOT / "bench" / "audiences.py"))
PG_BENCH_DB = "switchboard_bench_audiences"
BROKER_URL = "redis://127.0.0.1:6379/9"  # PostgreSQL runs only; its own queue name below
CACHE_URL = "redis://127.0.0.1:6379/10"
SEED_SOURCE = "Bench history"  # the stored events
INGEST_SOURCE = "Bench ingest"  # what the web server is sent in the ingest phase
REFINER_NAME = "Refiner (bench)"  # default base URL: nothing is sent, no worker runs

# Targets (the issue that asked for the engine), on this 2-core machine.
TARGET_FIRST_SECONDS = 30.0  # first computation, 1,000,000 events, 100,000 users
TARGET_WINDOW_SECONDS = 10.0  # window pass over 100,000 members
TARGET_INGEST_RATIO = 1.15  # web CPU per event with 10 live audiences / with none
# "Flat": the computation's peak RSS growth at the full size is within this of the small
# size's (the users, hence the sets the engine holds, are the same; only events grow).
FLAT_MB = 25.0

# The data: users with a plan and a country; events spread over DAYS days. The first event of
# each user is a "Session Started" within SESSION_DAYS (so every user is in the window audience);
# of the rest, POWER_SHARE go to the first POWER_USERS share of users, the others to anyone.
DAYS = 30
SESSION_DAYS = 29
POWER_USERS = 0.2
POWER_SHARE = 0.8
PLANS = (("free", 35), ("trial", 40), ("pro", 15), ("enterprise", 10))
COUNTRIES = ("US", "DE", "FR", "GB", "BR", "IN", "JP", "CA")
EVENT_NAMES = (
    ("Report Exported", 35),
    ("Dashboard Viewed", 15),
    ("Session Started", 15),
    ("Query Run", 12),
    ("Chart Created", 10),
    ("Comment Added", 6),
    ("Member Invited", 5),
    ("Plan Upgraded", 2),
)
FORMATS = ("csv", "pdf", "xlsx")

# The first computation: "performed 'Report Exported' at least 3 times in the last 7 days",
# plus a trait condition.
EXPORTED = "Report Exported"
EXPORT_TIMES = 3
EXPORT_DAYS = 7
FIRST_PLAN = "trial"
FIRST_DEFINITION: dict[str, Any] = {
    "match": "all",
    "conditions": [
        {"type": "trait", "path": "traits.plan", "op": "equals", "value": FIRST_PLAN},
        {"type": "event", "event": EXPORTED, "count": "at_least", "times": EXPORT_TIMES,
         "within_days": EXPORT_DAYS},
    ],
}  # fmt: skip

# The window pass: every user has a "Session Started" in the last 30 days, so all are members;
# moving ``now`` forward by SHIFT_DAYS makes those without a recent one leave.
SESSION = "Session Started"
WINDOW_DEFINITION: dict[str, Any] = {
    "match": "all",
    "conditions": [
        {"type": "event", "event": SESSION, "count": "at_least", "times": 1, "within_days": DAYS}
    ],
}
SHIFT_DAYS = 3


def event(name: str, count: str, times: int, days: int | None, **more: Any) -> dict[str, Any]:
    return {"type": "event", "event": name, "count": count, "times": times,
            "within_days": days, **more}  # fmt: skip


def trait(path: str, value: str) -> dict[str, Any]:
    return {"type": "trait", "path": path, "op": "equals", "value": value}


# The ingest phase's 10 live audiences: every kind of condition. ``{"type": "audience",
# "audience": N}`` names the Nth of this list (from 1); the role puts in its id.
LIVE_AUDIENCES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("Trial exporters", FIRST_DEFINITION),
    ("Dashboard regulars", {"match": "all", "conditions": [
        event("Dashboard Viewed", "at_least", 5, 30)]}),
    ("Enterprise chart makers", {"match": "all", "conditions": [
        trait("traits.plan", "enterprise"), event("Chart Created", "at_least", 1, 14)]}),
    ("Quiet this week", {"match": "all", "conditions": [event(SESSION, "none", 0, 7)]}),
    ("Heavy exporters or upgraders", {"match": "any", "conditions": [
        event(EXPORTED, "at_least", 10, None), event("Plan Upgraded", "at_least", 1, 30)]}),
    ("CSV exporters", {"match": "all", "conditions": [event(
        EXPORTED, "at_least", 2, 7,
        where=[{"path": "properties.format", "op": "equals", "value": "csv"}])]}),
    ("Germany", {"match": "all", "conditions": [trait("traits.country", "DE")]}),
    ("Light pro users", {"match": "all", "conditions": [
        event("Query Run", "at_most", 2, 30), trait("traits.plan", "pro")]}),
    ("Trial exporters outside Germany", {"match": "all", "conditions": [
        {"type": "audience", "audience": 1, "in": True},
        {"type": "audience", "audience": 7, "in": False}]}),
    ("Single inviters", {"match": "all", "conditions": [
        event("Member Invited", "exactly", 1, 30)]}),
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What a run does: its sizes and the ingest phase's rounds."""

    users: int
    events: int  # the full size
    small_events: int  # the comparison size (memory must not grow with events)
    rounds: int  # A/B pairs in the ingest phase
    singles: int  # single-event requests per round
    batches: int  # 100-event batches per round
    connections: int
    web_workers: int
    quick: bool

    @classmethod
    def make(cls, *, quick: bool, web_workers: int) -> Plan:
        scale = 10 if quick else 1
        return cls(
            users=100_000 // scale,
            events=1_000_000 // scale,
            small_events=250_000 // scale,
            rounds=2 if quick else 4,
            singles=300 if quick else 3_000,
            batches=10 if quick else 200,
            connections=8,
            web_workers=web_workers,
            quick=quick,
        )


BATCH_SIZE = 100

"""The replay benchmark's constants, the worker processes it runs (those ``manage.py start``
runs) and the plan of a run."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from measure.paths import ROOT

# The benchmark's Django roles run as child processes of its entry point.
SELF = (sys.executable, str(ROOT / "bench" / "replay.py"))
PG_BENCH_DB = "switchboard_bench_replay"
BROKER_URL = "redis://127.0.0.1:6379/7"
CACHE_URL = "redis://127.0.0.1:6379/8"
QUEUE_PREFIX = "bench-replay"

HISTORY_DAYS = 30
# History events per user at most: Refiner takes 100 requests a minute per user (subject), and
# a replay, another replay over it and the live events together never send a user that many.
EVENTS_PER_USER = 25
MIN_USERS = 2_001
# The users of the delivery benchmark's documents: number * 7919 % users.
USER_STRIDE = 7919

TARGET_SHARE = 0.8  # replay deliveries/s over live deliveries/s, measured in the same run
TARGET_MEMORY_RATIO = 1.2  # replay worker RSS at 100 % of the replay over RSS at 10 %
TARGET_P95_SECONDS = 1.0  # live received -> delivered while a replay runs
DRAIN_SECONDS = 30  # after the latency phase's load, how long live deliveries may take
# After the latency phase's replay has delivered its first rows, this long before the load starts.
RAMP_SECONDS = 3.0
# A cancelled replay has stopped once its rows have not changed for this long.
STILL_SECONDS = 3.0
# The CPU of these counts exited children too: Django's database connections come and go.
SERVICES = "PostgreSQL + Redis (whole servers)"


def history_users(events: int) -> int:
    """Enough users that none has more than EVENTS_PER_USER history events, and users that
    each get both identifies and tracks (an odd number) in an interleaved order (not a
    multiple of the stride)."""
    users = max(MIN_USERS, -(-events // EVENTS_PER_USER)) | 1
    while users % USER_STRIDE == 0:
        users += 2
    return users


@dataclass(frozen=True)
class Workers:
    """The two worker processes ``manage.py start`` runs, as its defaults make them: the
    delivery worker (default queue, with beat) and the replay worker (replay queue, at a lower
    CPU priority). The bench runs ``start`` itself; these describe it."""

    delivery_threads: int
    replay_threads: int
    replay_niceness: int

    @classmethod
    def as_start_runs_them(cls) -> Workers:
        """From the command itself (the bench process has Django loaded)."""
        from dashboard.management.commands.start import (
            REPLAY_NICENESS,
            REPLAYS_AT_ONCE,
            Command,
        )

        parser = Command().create_parser("manage.py", "start")
        return cls(int(parser.get_default("delivery_threads")), REPLAYS_AT_ONCE, REPLAY_NICENESS)


@dataclass(frozen=True)
class Plan:
    """What a run does: its sizes and the latency phase's load."""

    events: int  # history events, replayed in phase 3
    live: int  # live events of phase 2, the floor
    rate: float  # phase 4's offered events/s
    latency_seconds: float
    web_workers: int
    workers: Workers
    # Settings given to the app's processes besides the defaults (an experiment's).
    app_env: tuple[tuple[str, str], ...] = ()

    @property
    def users(self) -> int:
        return history_users(self.events)

    @property
    def timeout(self) -> float:
        """How long a phase may take before the bench gives up on it (deliveries at 50/s)."""
        return max(180.0, (self.events + self.live) / 50)

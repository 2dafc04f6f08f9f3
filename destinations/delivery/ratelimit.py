"""Per-destination request budgets over one-minute windows, on counters every worker process
shares (``destinations.counters``: Redis with ``CACHE_URL``, else a SQLite file in the data
directory).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping

from destinations.counters import add_to_counters

WINDOW_SECONDS = 60


def window_end() -> float:
    """Epoch seconds at which the current window closes."""
    now = time.time()
    return now - (now % WINDOW_SECONDS) + WINDOW_SECONDS


def take_all(wanted: Mapping[str, tuple[int, int]]) -> dict[str, int]:
    """For each key, take up to ``amount`` of the window's ``limit`` (``wanted[key] = (amount,
    limit)``); returns how many each was granted. All counters move in one round trip."""
    window = int(time.time() // WINDOW_SECONDS)
    counted = {key: want for key, want in wanted.items() if want[0] > 0 and want[1] > 0}
    used = add_to_counters(
        {f"deliver-rl:{key}:{window}": amount for key, (amount, _) in counted.items()},
        ttl_seconds=WINDOW_SECONDS * 2,
    )
    granted = {key: amount for key, (amount, _) in wanted.items()}
    for key, (amount, limit) in counted.items():
        before = used[f"deliver-rl:{key}:{window}"] - amount
        granted[key] = max(0, min(amount, limit - before))
    return granted


def grant(
    destination_id: int,
    subjects: Iterable[str | None],
    *,
    per_minute: int,
    subject_per_minute: int,
) -> list[bool]:
    """For each request (named by its subject), whether it may be sent in this window."""
    wanted = list(subjects)
    allowed = [True] * len(wanted)
    if subject_per_minute > 0:
        counts = Counter(s for s in wanted if s)
        taken = take_all(
            {f"{destination_id}:s:{s}": (n, subject_per_minute) for s, n in counts.items()}
        )
        granted = {s: taken[f"{destination_id}:s:{s}"] for s in counts}
        for index, subject in enumerate(wanted):
            if subject:
                allowed[index] = granted[subject] > 0
                granted[subject] -= 1
    if per_minute > 0:
        key = f"{destination_id}"
        budget = take_all({key: (sum(allowed), per_minute)})[key]
        for index, ok in enumerate(allowed):
            if ok:
                allowed[index] = budget > 0
                budget -= 1
    return allowed

"""Per-destination request budgets over one-minute windows, counted in the Django cache.

With ``CACHE_URL`` on Redis every worker process shares the count; with the embedded per-process
cache each worker process counts for itself (documented in docs/decisions).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable

from django.core.cache import cache

WINDOW_SECONDS = 60


def window_end() -> float:
    """Epoch seconds at which the current window closes."""
    now = time.time()
    return now - (now % WINDOW_SECONDS) + WINDOW_SECONDS


def take(key: str, amount: int, limit: int) -> int:
    """Take up to ``amount`` of the window's ``limit``; returns how many were granted."""
    if limit <= 0 or amount <= 0:
        return amount
    window = int(time.time() // WINDOW_SECONDS)
    name = f"deliver-rl:{key}:{window}"
    cache.add(name, 0, timeout=WINDOW_SECONDS * 2)
    try:
        used = cache.incr(name, amount)
    except ValueError:  # expired between add and incr
        cache.set(name, amount, timeout=WINDOW_SECONDS * 2)
        used = amount
    before = used - amount
    return max(0, min(amount, limit - before))


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
        granted = {
            s: take(f"{destination_id}:s:{s}", n, subject_per_minute) for s, n in counts.items()
        }
        for index, subject in enumerate(wanted):
            if subject:
                allowed[index] = granted[subject] > 0
                granted[subject] -= 1
    if per_minute > 0:
        budget = take(f"{destination_id}", sum(allowed), per_minute)
        for index, ok in enumerate(allowed):
            if ok:
                allowed[index] = budget > 0
                budget -= 1
    return allowed

"""Per-source request rate limit over one-second windows, on counters every web process shares
(``destinations.counters``: Redis with ``CACHE_URL``, else a SQLite file in the data directory).

A process does not add every request to the shared counter: it leases part of the second's
budget (a fiftieth of the limit, at least one request) and hands it out to its requests until it
is spent. The counter counts what the processes leased, so the limit still holds across them;
what a process leased and did not use by the end of the second is lost, so a source sending at
its limit through several processes may be refused a little before it: at most one lease, less
one request, per process and second (ADR 0029). A limit under 100 leases one request at a time,
exactly as before. On Redis this turns one round trip per request into one per lease.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from destinations.counters import add_to_counters
from destinations.ingest.auth import SourceRef
from destinations.messages.errors import IngestError

# A lease is at most this fraction of a source's limit per second.
LEASES_PER_SECOND = 50


@dataclass
class Lease:
    window: int  # the second (Unix time) it was leased for
    left: int  # requests it may still accept


class Leases:
    """This process's unspent leases, by source id."""

    def __init__(self) -> None:
        self.clear()
        # A forked child starts with none (the parent spends what it leased) and a free lock.
        os.register_at_fork(after_in_child=self.clear)

    def clear(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[int, Lease] = {}

    def take_one(self, source_id: int, window: int) -> bool:
        """Spend one request of the source's lease for ``window``, if one is left."""
        with self.lock:
            lease = self.held.get(source_id)
            if lease is None or lease.window != window or lease.left <= 0:
                return False
            lease.left -= 1
            return True

    def add(self, source_id: int, window: int, count: int) -> None:
        with self.lock:
            lease = self.held.get(source_id)
            if lease is not None and lease.window == window:
                lease.left += count
            else:
                self.held[source_id] = Lease(window=window, left=count)


_leases = Leases()


def lease_size(limit: int) -> int:
    return max(1, limit // LEASES_PER_SECOND)


def check_rate_limit(source: SourceRef) -> None:
    now = time.time()
    window = int(now)
    if _leases.take_one(source.id, window):
        return
    limit = source.rate_limit_per_second
    size = lease_size(limit)
    key = f"ingest-rate:{source.id}:{window}"
    leased_before = add_to_counters({key: size}, ttl_seconds=5)[key] - size
    granted = min(size, limit - leased_before)
    if granted >= 1:
        _leases.add(source.id, window, granted - 1)  # this request takes one
        return
    retry_after = max(1, int(window + 1 - now + 0.999))
    raise IngestError(
        429,
        f"Rate limit of {limit} requests per second exceeded "
        f"for source {source.name!r}; retry after {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


def forget_leases() -> None:
    """Drop this process's unspent leases (tests that stand for another process)."""
    _leases.clear()

"""Per-source request rate limit over one-second windows, on counters every web process shares
(``destinations.counters``: Redis with ``CACHE_URL``, else a SQLite file in the data directory).
"""

from __future__ import annotations

import time

from destinations.counters import add_to_counters
from destinations.ingest.auth import SourceRef
from destinations.messages.errors import IngestError


def check_rate_limit(source: SourceRef) -> None:
    now = time.time()
    window = int(now)
    key = f"ingest-rate:{source.id}:{window}"
    count = add_to_counters({key: 1}, ttl_seconds=5)[key]
    if count > source.rate_limit_per_second:
        retry_after = max(1, int(window + 1 - now + 0.999))
        raise IngestError(
            429,
            f"Rate limit of {source.rate_limit_per_second} requests per second exceeded "
            f"for source {source.name!r}; retry after {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )

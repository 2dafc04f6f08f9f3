"""What a web process loads before it takes its first connection.

Some of what requests need is loaded on first use: the Redis client library (imported by the
cache backend when ingest first counts against a rate limit), the broker's transport (when the
first delivery task is sent) and the URL patterns. In a fresh process that is more than a
second of CPU, all of it holding the GIL: a server started under traffic answered its first
second's requests seconds late (p50 3.4 s at 200 requests/s in the replay benchmark's first
load after ``start``). Loading it here moves that cost before ``announce_ready``.

Nothing here connects to anything: a broker or cache that is down at start is the first
request's business, as before. A step that fails is logged and left to the first request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


def load_urls() -> None:
    from django.urls import get_resolver

    resolver = get_resolver()
    resolver.resolve("/v1/track")  # imports every URL module
    resolver.reverse_dict  # noqa: B018 - the reverse lookup tables pages build links from


def load_cache_client() -> None:
    # The client and its connection pool, without a connection (None: the cache is not Redis).
    from destinations.counters import redis_client

    redis_client()


def load_broker_transport() -> None:
    from celery import current_app

    current_app.connection_for_write().transport  # noqa: B018 - imports the transport class


STEPS: tuple[Callable[[], None], ...] = (load_urls, load_cache_client, load_broker_transport)


def warm_up() -> None:
    for step in STEPS:
        try:
            step()
        except Exception:
            logger.warning("warm-up: %s failed; the first request does it", step.__name__)

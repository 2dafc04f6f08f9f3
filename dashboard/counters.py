"""Counters that expire, in the Django cache: the request budgets of ingest and delivery.

On Redis (``CACHE_URL``) every process shares them and a whole set of counters is added to in
one pipelined round trip: a delivery task counts each of its users, and two round trips per
user cost more than sending did. On the embedded per-process cache they use the cache's own
``add``/``incr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


def add_to_counters(amounts: Mapping[str, int], ttl_seconds: int) -> dict[str, int]:
    """Add each amount to its counter (created at 0 with ``ttl_seconds`` to live if absent) and
    return the counters' new values."""
    if not amounts:
        return {}
    client = redis_client()
    if client is None:
        return {name: add_locally(name, amount, ttl_seconds) for name, amount in amounts.items()}
    names = list(amounts)
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            key = cache.make_key(name)  # KEY_PREFIX and version, as cache.get() would see it
            # SET NX EX then INCRBY: the expiry is set once, by whoever creates the counter,
            # and works on every Redis version (EXPIRE ... NX needs 7.0).
            pipe.set(key, 0, ex=ttl_seconds, nx=True)
            pipe.incrby(key, amounts[name])
        replies = pipe.execute()
    return {name: int(replies[2 * index + 1]) for index, name in enumerate(names)}


def add_locally(name: str, amount: int, ttl_seconds: int) -> int:
    cache.add(name, 0, timeout=ttl_seconds)
    try:
        return int(cache.incr(name, amount))
    except ValueError:  # expired between add and incr
        cache.set(name, amount, timeout=ttl_seconds)
        return amount


def redis_client() -> Any | None:
    """The cache's own Redis client, made once per process (it is thread-safe and draws its
    connections from the cache's pool); None when the cache is not Redis."""
    backend = caches["default"]  # ``cache`` is a proxy to it
    if not isinstance(backend, RedisCache):
        return None
    cached = _clients.get(id(backend))
    if cached is None or cached[0] is not backend:
        client = backend._cache.get_client(write=True)  # type: ignore[attr-defined]
        cached = _clients[id(backend)] = (backend, client)
    return cached[1]


# Keyed by the backend object: Django makes one per thread, and tests may swap the cache.
_clients: dict[int, tuple[RedisCache, Any]] = {}

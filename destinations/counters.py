"""Counters that expire: the request budgets of ingest and delivery, and failed logins.

Every process of an installation (web processes, Celery workers) shares them, and adding to one
is atomic, so a limit holds however many processes count against it (ADR 0018):

- On Redis (``CACHE_URL``) a whole set of counters is added to in one pipelined round trip (a
  delivery task counts each of its users, and two round trips per user cost more than sending
  did); the process that creates a counter, whose ``INCRBY`` returns just its amount, then sets
  its expiry, so the usual add is a single command.
- In the embedded default they are rows of a small SQLite file of their own in the data
  directory (``COUNTERS_PATH``), each added to by one ``INSERT ... ON CONFLICT DO UPDATE ...
  RETURNING`` statement, a set of them in one transaction. Django's cache backends cannot do
  this outside Redis: their ``incr`` is a get then a set. A file of its own keeps these small
  writes, one per ingest request, from queueing behind the main database's writer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


def add_to_counters(amounts: Mapping[str, int], ttl_seconds: int) -> dict[str, int]:
    """Add each amount to its counter (created at 0 with ``ttl_seconds`` to live if absent) and
    return the counters' new values."""
    if not amounts:
        return {}
    client = redis_client()
    if client is None:
        return embedded_counters().add(amounts, ttl_seconds)
    keys = {name: cache.make_key(name) for name in amounts}  # KEY_PREFIX and version
    if len(keys) == 1:
        # One counter (an ingest request's rate limit): a plain command, no pipeline.
        ((name, key),) = keys.items()
        values = {name: int(client.incrby(key, amounts[name]))}
    else:
        with client.pipeline(transaction=False) as pipe:
            for name, key in keys.items():
                pipe.incrby(key, amounts[name])
            values = dict(zip(keys, map(int, pipe.execute()), strict=True))
    # Whoever created a counter gives it its expiry: its INCRBY returned just its amount.
    created = [keys[name] for name, value in values.items() if value == amounts[name]]
    if created:
        with client.pipeline(transaction=False) as pipe:
            for key in created:
                pipe.expire(key, ttl_seconds)
            pipe.execute()
    return values


def forget_counter(name: str) -> None:
    """Remove a counter: the next add starts it again from 0."""
    if redis_client() is None:
        embedded_counters().forget(name)
    else:
        cache.delete(name)


def clear_counters() -> None:
    """Remove every counter of the embedded store (tests). On Redis the counters are cache keys:
    ``cache.clear()`` removes them with the rest."""
    if redis_client() is None:
        embedded_counters().clear()


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


SCHEMA = """
CREATE TABLE IF NOT EXISTS counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID
"""
# One statement reads and writes the row under SQLite's write lock: two processes adding at
# once both count. An expired row starts again from the amount, with a new expiry.
ADD = """
INSERT INTO counter (name, value, expires_at) VALUES (:name, :amount, :expires_at)
ON CONFLICT (name) DO UPDATE SET
    value = CASE WHEN counter.expires_at > :now
        THEN counter.value + excluded.value ELSE excluded.value END,
    expires_at = CASE WHEN counter.expires_at > :now
        THEN counter.expires_at ELSE excluded.expires_at END
RETURNING value
"""
# Expired rows are deleted by whichever process adds next, at most this often.
SWEEP_SECONDS = 60.0


class EmbeddedCounters:
    """The counters in a SQLite file, for every process on the machine.

    One connection per process; its threads take turns on a lock, so they queue in Python
    instead of in SQLite's busy handler (which sleeps, then backs off up to 100 ms). Only
    another process's transaction, a few tens of microseconds, can make one wait there.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.connection: sqlite3.Connection | None = None
        self.swept_at = 0.0

    def connect(self) -> sqlite3.Connection:
        if self.connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=20, isolation_level=None, check_same_thread=False
            )
            # The counters live a few seconds to a few minutes: a crash of the machine may
            # lose the last ones (NORMAL does not sync each commit), never corrupt the file.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(SCHEMA)
            self.connection = connection
        return self.connection

    def add(self, amounts: Mapping[str, int], ttl_seconds: int) -> dict[str, int]:
        now = time.time()
        expires_at = now + ttl_seconds
        with self.lock:
            connection = self.connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                if now - self.swept_at > SWEEP_SECONDS:
                    connection.execute("DELETE FROM counter WHERE expires_at <= ?", (now,))
                    self.swept_at = now
                values = {
                    name: connection.execute(
                        ADD, {"name": name, "amount": amount, "expires_at": expires_at, "now": now}
                    ).fetchone()[0]
                    for name, amount in amounts.items()
                }
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        return values

    def forget(self, name: str) -> None:
        with self.lock:
            self.connect().execute("DELETE FROM counter WHERE name = ?", (name,))

    def clear(self) -> None:
        with self.lock:
            self.connect().execute("DELETE FROM counter")


_embedded: dict[Path, EmbeddedCounters] = {}


def embedded_counters() -> EmbeddedCounters:
    path: Path = settings.COUNTERS_PATH  # the same object each time: its hash is kept
    store = _embedded.get(path)
    if store is None:
        store = _embedded.setdefault(path, EmbeddedCounters(path))
    return store


def _forget_after_fork() -> None:
    # A forked child must not share its parent's SQLite connection, nor a lock that a parent's
    # thread held at the fork.
    _embedded.clear()


os.register_at_fork(after_in_child=_forget_after_fork)

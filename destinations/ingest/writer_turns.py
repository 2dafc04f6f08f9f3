"""On SQLite, the ingest writers of all the web processes take turns on a file lock.

SQLite lets one transaction write at a time. A writer that finds the database locked is put to
sleep by SQLite's busy handler and tries again after 1, 2, 5, 10, ... up to 100 ms, however soon
the lock is freed: with one writer per web process and connections spread across the processes,
a closed loop of single events at the machine's limit saw a p99 of 187 ms and a 1.7 s maximum
in ``bench/ingest.py``. Waiting on a file lock (``flock``) first, a writer sleeps in the kernel
and wakes as the other commits; SQLite's own lock is then free, save for the delivery worker
and the dashboard, which keep the busy handler. PostgreSQL has row locks and needs none of this.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from django.db import connection

try:
    import fcntl
except ImportError:  # Windows: SQLite's busy handler alone, as before
    fcntl = None  # type: ignore[assignment]

_local = threading.local()


def lock_path() -> Path | None:
    """The lock file beside the database file; None on PostgreSQL or an in-memory database."""
    if connection.vendor != "sqlite" or fcntl is None:
        return None
    return lock_path_of(str(connection.settings_dict["NAME"]))


@functools.cache
def lock_path_of(name: str) -> Path | None:
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    return Path(f"{name}-ingest-writer.lock")


@contextlib.contextmanager
def writers_take_turns() -> Iterator[None]:
    """Hold the writers' file lock (SQLite) for the duration of a write transaction."""
    path = lock_path()
    if path is None:
        yield
        return
    fd = lock_file(path)
    fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while it waits
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def lock_file(path: Path) -> int:
    """This thread's descriptor of ``path``: a lock taken through a descriptor is shared by
    everything using that descriptor, so each writer thread opens its own."""
    opened: dict[Path, int] = getattr(_local, "opened", None) or {}
    _local.opened = opened
    if path not in opened:
        opened[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return opened[path]

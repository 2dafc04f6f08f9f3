"""Counts the dashboard keeps in the cache for a few seconds (the navigation's conflict counts,
the demo banner, the Overview's settled slots), and how a change that moves them (a merge, an
undo, a deleted user, removing the demo data) makes every process count again at once.

Each cached value's key carries a stamp that ``counts_changed`` replaces. Deleting the keys
would reach only the process that made the change when the cache is per process (the embedded
default runs two web processes), so the stamp lives where every process sees it: in Redis when
the cache is shared, else in a small file in the data directory, read on each use.
"""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache

STAMP_KEY = "dashboard:counts-stamp"
STAMP_FILE = "counts-stamp"


def per_process_cache() -> bool:
    return isinstance(caches["default"], LocMemCache)


def counts_stamp() -> str:
    """Changes whenever ``counts_changed`` is called, in any process."""
    if not per_process_cache():
        return str(cache.get(STAMP_KEY, "0"))
    try:
        return (settings.DATA_DIR / STAMP_FILE).read_text()
    except FileNotFoundError:
        return "0"


def counts_changed() -> None:
    """Counts cached before now are not used again, in this process or any other."""
    stamp = secrets.token_hex(8)
    if not per_process_cache():
        cache.set(STAMP_KEY, stamp, timeout=None)
        return
    path = settings.DATA_DIR / STAMP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{STAMP_FILE}.{stamp}")
    partial.write_text(stamp)
    os.replace(partial, path)  # readers see the old stamp or the new one, never half of one


def stamped(key: str) -> str:
    """``key`` as cached since the last change."""
    return f"{key}:{counts_stamp()}"

"""Pooled HTTP sessions for delivery, one per sending thread (requests.Session is not
documented as thread-safe), each keeping its connections to a destination alive."""

from __future__ import annotations

import threading

import requests
from requests.adapters import HTTPAdapter

_local = threading.local()


def session() -> requests.Session:
    current: requests.Session | None = getattr(_local, "session", None)
    if current is None:
        current = requests.Session()
        # Retries are the engine's business (with backoff and a record of each attempt).
        adapter = HTTPAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
        current.mount("http://", adapter)
        current.mount("https://", adapter)
        current.headers["User-Agent"] = "Switchboard"
        _local.session = current
    return current

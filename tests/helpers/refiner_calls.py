"""Calling the fake Refiner over real HTTP as its tests do."""

from __future__ import annotations

from typing import Any

import requests

from destinations.standins.refiner import FakeRefiner

KEY = "rk_test"


BEARER = {"Authorization": f"Bearer {KEY}"}


def call(
    refiner: FakeRefiner, method: str, path: str, timeout: float = 2.0, **kwargs: Any
) -> requests.Response:
    kwargs.setdefault("headers", BEARER)
    return requests.request(method, refiner.url(path), timeout=timeout, **kwargs)

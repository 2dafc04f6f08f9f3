"""Fixtures of the project tests: the web server as operators run it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.server import WebServer


@pytest.fixture(scope="module")
def web_server(django_db_setup: None) -> Iterator[WebServer]:
    """Switchboard's web server as ``start`` runs it, two web processes, on the test
    database (its tests need ``transactional_db``), shared by the tests of one module."""
    server = WebServer(workers=2).start()
    yield server
    server.stop()

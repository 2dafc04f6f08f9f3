"""A private Redis server for tests that stop and restart the broker, and a way to point this
process's Celery app at it for the length of one test.

Tests that take the broker down must not touch a Redis that the rest of the suite (or a
developer) shares, so each gets its own ``redis-server`` on a free loopback port, with
persistence off: a restart comes back empty, as a broker that lost its queue would.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
from kombu import pools
from kombu.utils.collections import eqhash
from redis.backoff import NoBackoff
from redis.retry import Retry

from dashboard.project.celery import app
from tests.helpers.server import free_port
from tests.helpers.worker import wait_until

REDIS_SERVER = "redis-server"


class PrivateRedis:
    """``redis-server`` on 127.0.0.1, in a temporary directory, without RDB or AOF files."""

    def __init__(self) -> None:
        binary = shutil.which(REDIS_SERVER)
        if binary is None:
            raise RuntimeError(f"{REDIS_SERVER} is not on PATH: the broker tests need it")
        self.binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix="redis-"))
        self.log_path = self.directory / "redis.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        # Short timeouts and no retries: a test polling a server it just shut down, or shutting
        # it down (the server hangs up on that command), must not wait out a retry schedule.
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_connect_timeout=1,
            socket_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )

    def start(self, timeout: float = 10) -> PrivateRedis:
        """Start (or restart, on the same port) with an empty data set."""
        argv = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log_path),
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, timeout, self.describe)
        return self

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def queue_length(self, name: str | None = None) -> int:
        """Messages waiting in ``name``, by default the queue this process's tasks go to."""
        if name is None:
            name = app.conf.task_default_queue
        length: int = self.client().llen(name)
        return length

    def shutdown(self) -> None:
        """SHUTDOWN NOSAVE: the server exits at once and whatever it held is gone."""
        # The server hangs up on the command as it exits.
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown(nosave=True)
        if self.process is not None:
            self.process.wait(10)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self) -> str:
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"redis-server on port {self.port}, log:\n{log[-3000:]}"


# Broker settings this process's Celery app is pointed at while a test uses a private broker.
# ``broker_write_url`` rather than ``broker_url``: Celery reads a CELERY_BROKER_URL environment
# variable before the configured ``broker_url``, and the suite's Redis run sets that variable.
# Producers connect with the write URL, which no environment variable overrides here.
REDIRECTED = ("broker_write_url", "broker_transport_options")


@contextmanager
def celery_publishing_to(url: str) -> Iterator[None]:
    """Make this process's Celery app (ingest's enqueue, the sweeper) publish to ``url``."""
    saved: dict[str, Any] = {name: app.conf.get(name) for name in REDIRECTED}
    _forget_pools(app)
    # Fail fast when the server is down: enqueueing runs inside the ingest request.
    app.conf["broker_write_url"] = url
    app.conf["broker_transport_options"] = {"socket_connect_timeout": 1, "socket_timeout": 2}
    try:
        yield
    finally:
        _close_pools(app)
        for name, value in saved.items():
            app.conf[name] = value
        _forget_pools(app)


def _forget_pools(app: Any) -> None:
    """Drop the app's handles on its connection and producer pools so the next publish builds
    them again from the current configuration. The pools themselves stay in kombu's registry
    (keyed by broker URL), ready for when the configuration is restored."""
    app._pool = None
    app.amqp._producer_pool = None


def _close_pools(app: Any) -> None:
    """Close the private broker's connections; its pools are never used again."""
    key = eqhash(app.connection_for_write())
    for group in (pools.producers, pools.connections):
        # dict.pop, not the group's own lookup: that would create a pool for a missing key.
        pool = dict.pop(group, key, None)
        if pool is not None:
            pool.force_close_all()

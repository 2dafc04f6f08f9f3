"""Switchboard's web server exactly as operators run it (``manage.py start --no-worker``: waitress
in several processes on one socket), in a subprocess on a free loopback port, on the test
database and the test data directory.

Tests that use it also need ``transactional_db``: the server's processes see only committed
rows. Its processes share the test process's data directory, so the cache and counters too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings

from tests.helpers.worker import TEST_QUEUE, spawn, test_database_url, wait_until

HOST = "127.0.0.1"
# The servers' logs, readable after a server stopped (tests look for tracebacks in them), gone
# when the test process ends.
LOG_DIR = Path(tempfile.mkdtemp(prefix="web-server-logs-"))
atexit.register(shutil.rmtree, LOG_DIR, True)


def free_port() -> int:
    """A loopback port nothing listens on (connecting is refused at once) until someone binds it."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class WebServer:
    def __init__(
        self, workers: int = 2, env: Mapping[str, str] | None = None, port: int | None = None
    ) -> None:
        self.workers = workers
        # A given port: a server started again where its clients (an SDK's fixed URL) still send.
        self.port = port or free_port()
        self.ready_dir = Path(tempfile.mkdtemp(prefix="web-ready-"))
        self.log_path = Path(tempfile.mkstemp(prefix="server-", suffix=".log", dir=LOG_DIR)[1])
        self.env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "SWITCHBOARD_DATA_DIR": str(settings.DATA_DIR),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "SWITCHBOARD_QUEUE": TEST_QUEUE,
            # Each web process leaves a file here once it serves: requests start after all do.
            "SWITCHBOARD_READY_DIR": str(self.ready_dir),
            # start makes a first admin when there is none; a known password keeps it quiet.
            "DJANGO_SUPERUSER_PASSWORD": "not-shown",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 60) -> WebServer:
        argv = [
            *(sys.executable, "manage.py", "start", "--no-worker"),
            *("--host", HOST, "--port", str(self.port), "--web-workers", str(self.workers)),
        ]
        self.process = spawn(argv, env=self.env, log_path=self.log_path)
        wait_until(lambda: self.exited() or self.ready(), timeout, self.describe)
        assert not self.exited(), self.describe()
        return self

    def ready(self) -> bool:
        return len(list(self.ready_dir.iterdir())) >= self.workers

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, as a service manager (or Ctrl-C) stops it; the exit code, None if it had to
        be killed."""
        if self.process is None:
            return None
        code: int | None = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = self.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left of it
        self.process.wait()
        shutil.rmtree(self.ready_dir, ignore_errors=True)
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        return f"server log:\n{self.log()[-6000:]}"

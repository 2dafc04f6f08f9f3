"""Switchboard's web server as ``start`` runs it (gunicorn, several gthread worker processes), in
a subprocess on a free loopback port, on the test database and the test data directory.

Tests that need it also need ``transactional_db``: the server's processes see only committed
rows. Its processes share the test process's data directory, so the cache and the counters too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings

from dashboard.management.commands.start import web_server_argv
from tests.worker import ROOT, TEST_QUEUE, die_with_parent, test_database_url, wait_until

READY_HOOK = Path(__file__).with_name("gunicorn_ready.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class WebServer:
    def __init__(self, workers: int = 2, env: Mapping[str, str] | None = None) -> None:
        self.workers = workers
        self.port = free_port()
        self.ready_dir = Path(tempfile.mkdtemp(prefix="web-ready-"))
        self.log_path = Path(tempfile.mkstemp(prefix="web-", suffix=".log")[1])
        self.env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "SWITCHBOARD_DATA_DIR": str(settings.DATA_DIR),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "SWITCHBOARD_QUEUE": TEST_QUEUE,
            "SWITCHBOARD_TEST_READY_DIR": str(self.ready_dir),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> WebServer:
        argv = [*web_server_argv("127.0.0.1", self.port, self.workers), "--config", str(READY_HOOK)]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
            preexec_fn=die_with_parent,
            start_new_session=True,
        )
        wait_until(self.ready, timeout, self.describe)
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            code = self.process.returncode
            raise AssertionError(f"the web server exited with {code}. {self.describe()}")
        return len(list(self.ready_dir.iterdir())) >= self.workers

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.process:
            # Worker processes that outlived the arbiter go too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.ready_dir, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        return f"web server log:\n{self.log()[-6000:]}"

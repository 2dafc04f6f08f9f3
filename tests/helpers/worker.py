"""A real Celery worker (with its beat scheduler running the sweeper) in a subprocess, pointed
at the test database and the same broker as the test process."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from dashboard.project.queues import replay_queue

ROOT = Path(__file__).resolve().parents[2]
# This test session's own queue: a worker left over from another run on the same broker (a
# shared Redis) cannot take its tasks, nor can its workers take another run's.
TEST_QUEUE = f"switchboard-test-{uuid.uuid4().hex[:12]}"

PR_SET_PDEATHSIG = 1
# Fast clocks for tests: retries after fractions of a second, claims lost after a few seconds.
TEST_DELIVERY_ENV = {
    "DELIVERY_BACKOFF_BASE_SECONDS": "0.2",
    "DELIVERY_BACKOFF_MAX_SECONDS": "2",
    "DELIVERY_SWEEP_SECONDS": "0.5",
    "DELIVERY_REQUEUE_AFTER_SECONDS": "3",
    "DELIVERY_LEASE_SECONDS": "4",
    "DELIVERY_TIMEOUT_SECONDS": "2",
}


def test_database_url() -> str:
    """The database the test process is using, as a URL another process can open."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        auth = db["USER"] or "postgres"
        if db["PASSWORD"]:
            auth += f":{db['PASSWORD']}"
        return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    raise RuntimeError(f"no worker support for {connection.vendor}")


class Worker:
    """``celery worker --beat`` of the project, started by ``start()``."""

    def __init__(self, env: Mapping[str, str] | None = None, concurrency: int = 4) -> None:
        self.log_path = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])
        self.schedule = Path(tempfile.mkdtemp(prefix="beat-")) / "schedule"
        self.env = {
            **os.environ,
            **TEST_DELIVERY_ENV,
            # Fake destinations and webhook receivers listen on loopback.
            "SWITCHBOARD_ALLOW_PRIVATE_URLS": "true",
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "SWITCHBOARD_QUEUE": TEST_QUEUE,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Worker:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "dashboard.project",
            "worker",
            "--beat",
            "--schedule",
            str(self.schedule),
            "--pool",
            "threads",
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            # Live work and replays: production runs them in separate worker processes.
            "--queues",
            f"{TEST_QUEUE},{replay_queue(TEST_QUEUE)}",
        ]
        # Its own process group: the beat scheduler runs in a child process, which kill() must
        # take down too (a parent-death signal does not pass on to grandchildren).
        self.process = spawn(argv, env=self.env, log_path=self.log_path)
        wait_until(lambda: b" ready." in self.log_path.read_bytes(), timeout, self.describe)
        return self

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, messages in flight are not given back to the broker."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process:
            # Whatever of its group outlived it (the beat child) goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        shutil.rmtree(self.schedule.parent, ignore_errors=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        return f"worker log:\n{self.log()[-6000:]}"


def spawn(argv: list[str], *, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A process of the project's, in its own process group (so the whole group can be
    killed), logging to ``log_path``, and killed if the test process dies."""
    log = log_path.open("wb")
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=log,
        preexec_fn=die_with_parent,
        start_new_session=True,
    )


def die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the test process dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_until(
    condition: Callable[[], Any], timeout: float, explain: Callable[[], str] = lambda: ""
) -> Any:
    """Poll ``condition`` until it is truthy; fail with ``explain()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s. {explain()}")
        time.sleep(0.05)


StartWorker = Callable[..., Worker]


def crash(worker: Worker) -> None:
    """SIGKILL the worker and the beat process it forked, as when its machine dies. Killing only
    the worker's own process would leave its embedded beat running, orphaned, still sending
    sweeps to the broker after the test."""
    assert worker.process is not None
    tasks = Path(f"/proc/{worker.process.pid}/task")
    children = [int(pid) for f in tasks.glob("*/children") for pid in f.read_text().split()]
    worker.kill()  # first, so the worker never sees its beat go
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

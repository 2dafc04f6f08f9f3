"""``manage.py start --no-worker`` in a subprocess on a free loopback port, pointed at the test
database: the web server exactly as operators run it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tests.worker import ROOT, die_with_parent, test_database_url, wait_until

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class StartedServer:
    def __init__(self, env: Mapping[str, str] | None = None, web_workers: int = 2) -> None:
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="server-", suffix=".log")[1])
        self.env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            # start makes a first admin when there is none; a known password keeps it quiet.
            "DJANGO_SUPERUSER_PASSWORD": "not-shown",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.web_workers = web_workers
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> StartedServer:
        argv = [
            *(sys.executable, "manage.py", "start", "--no-worker"),
            *("--host", HOST, "--port", str(self.port), "--web-workers", str(self.web_workers)),
        ]
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
        wait_until(lambda: self.exited() or answers(self.port), timeout, self.describe)
        assert not self.exited(), self.describe()
        return self

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
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        return f"server log:\n{self.log()[-6000:]}"

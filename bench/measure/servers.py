"""The app's processes: a child process group with its log, stopped with its descendants, and
``manage.py start`` on loopback, ready once it answers /healthz."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from measure.paths import ROOT
from measure.proc import children, descendants

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class ProcessGroup:
    """A child process in its own session, writing to a log file, stopped with its
    descendants."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                list(argv),
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def pids(self) -> list[int]:
        return [self.process.pid, *descendants(self.process.pid)]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{what} exited:\n{self.text()[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout} s:\n{self.text()[-4000:]}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the group
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def web_server_pids(server: ProcessGroup) -> list[int]:
    """The web server processes (the children of ``start`` that run
    dashboard.project.webserver) and the ingest writer process, if there is one."""
    pids = []
    for pid in children(server.process.pid):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"dashboard.project.webserver" in cmdline or b"project.ingest_writer" in cmdline:
                pids.append(pid)
    return pids


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start_server(
    env: dict[str, str], port: int, web_workers: int, log: Path, *options: str
) -> ProcessGroup:
    """``manage.py start`` on loopback as production runs it (migrations, then the web server
    processes and, without ``--no-worker``, a Celery worker), once it answers /healthz."""
    argv = [sys.executable, "manage.py", "start", "--host", HOST, "--port", str(port)]
    server = ProcessGroup([*argv, "--web-workers", str(web_workers), *options], env, log)
    try:
        server.wait_for(lambda: healthy(port), "manage.py start")
    except BaseException:
        server.stop()
        raise
    return server

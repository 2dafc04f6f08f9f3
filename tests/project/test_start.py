"""``manage.py start --demo`` as an operator runs it: a real web server, worker and the demo
stand-ins, on the embedded default (SQLite and the folder broker) in a data directory of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers.worker import ROOT

# Generous: the web server, the worker and the stand-ins all start, and the demo data is stored.
STARTUP_SECONDS = 60
DELIVERY_SECONDS = 60


def free_port_run(length: int) -> int:
    """A port with the next ``length - 1`` ports free as well (the stand-ins take port+1, +2)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + length > 65535:
            continue
        try:
            for offset in range(length):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError("no run of free ports")


def delivered_to(database: Path, destination: str) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute(
            "SELECT count(*) FROM destinations_delivery d "
            "JOIN destinations_destination t ON t.id = d.destination_id "
            "WHERE t.name = ? AND d.status = 'delivered'",
            (destination,),
        ).fetchone()
    return int(row[0])


def start_command(data_dir: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``manage.py start`` on the embedded default (whatever the suite itself runs on) in
    ``data_dir``, its output in ``start.log`` there; returns once it says it is running."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL")
        and not name.startswith("SWITCHBOARD_")
    }
    env.update(
        SWITCHBOARD_DATA_DIR=str(data_dir),
        DJANGO_SUPERUSER_PASSWORD="start-test",
        PYTHONUNBUFFERED="1",
    )
    log = data_dir / "start.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "start", "--web-workers", "1", *args],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while "Switchboard is running" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    except BaseException:
        process.kill()
        raise
    return process, log


def test_start_demo_delivers_to_its_stand_ins_and_prints_no_broker_noise() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="start-demo-"))
    process, log = start_command(
        data_dir, "--demo", "--port", str(free_port_run(3)), "--delivery-threads", "2"
    )
    try:
        database = data_dir / "switchboard.sqlite3"
        deadline = time.monotonic() + DELIVERY_SECONDS
        while (
            delivered_to(database, "Refiner (demo)") == 0
            or delivered_to(database, "Kana (demo)") == 0
        ):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    printed = log.read_text()
    assert "address not allowed" not in printed
    assert "SWITCHBOARD_ALLOW_PRIVATE_URLS=true" in printed  # the demo line says why
    # The folder broker has no host: kombu must not warn that none was given.
    assert "No hostname was supplied" not in printed


def children_of(pid: int) -> set[int]:
    """Every process descended from ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_no_web_server_or_worker_outlives_a_killed_start_command() -> None:
    """Even SIGKILL, which the command cannot catch: its children are told to stop."""
    data_dir = Path(tempfile.mkdtemp(prefix="start-kill-"))
    process, _ = start_command(data_dir, "--port", str(free_port_run(1)), "--delivery-threads", "1")
    try:
        started = children_of(process.pid)
        # The web server, the delivery worker (and its scheduler) and the replay worker.
        assert len(started) >= 3, started
    finally:
        process.kill()
        process.wait(timeout=10)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in started) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = [pid for pid in started if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after the start command was killed: {left}"

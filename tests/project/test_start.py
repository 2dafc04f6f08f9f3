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


def test_start_demo_delivers_to_its_stand_ins_and_prints_no_broker_noise() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="start-demo-"))
    port = free_port_run(3)
    env = {
        name: value
        for name, value in os.environ.items()
        # The embedded default, whatever the suite itself runs on; and the guard's default.
        if name not in ("DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL")
        and not name.startswith("SWITCHBOARD_")
    }
    env.update(
        SWITCHBOARD_DATA_DIR=str(data_dir),
        DJANGO_SUPERUSER_PASSWORD="start-demo-test",
        PYTHONUNBUFFERED="1",
    )
    log = data_dir / "start.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "start", "--demo", "--port", str(port),
             "--web-workers", "1", "--delivery-threads", "2"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while "Switchboard is running" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
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

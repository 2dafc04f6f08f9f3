"""Ingest benchmark: how many Segment events per second Switchboard accepts, and how fast.

Run from the repository root::

    uv run python bench/ingest.py                  # SQLite and PostgreSQL, about 3-4 minutes
    uv run python bench/ingest.py --db postgres    # one database
    uv run python bench/ingest.py --quick          # about a minute, a smoke test

For each database it makes a fresh one (a temporary data directory for SQLite, a dedicated
``switchboard_bench`` database for PostgreSQL), migrates it, creates a source with
``manage.py createsource`` and lifts its rate limit, starts gunicorn the way
``manage.py start`` does (gthread workers) on a free loopback port, and measures:

a. single-event ``POST /v1/track`` at a fixed concurrency (closed loop): events/s, p50/p99;
b. ``POST /v1/batch`` with 100 events per request (closed loop): events/s, p50/p99 per request;
c. single-event requests offered at a fixed rate (open loop: sends are scheduled on a clock and
   latency is measured from the scheduled time, so a stalled server cannot hide its queue);
d. the ceiling: as many rows as phase b stored, inserted straight into the events table by one
   connection in 100-row transactions (multi-row INSERT; COPY too on PostgreSQL).

After every phase the events table is counted per phase (each phase has its own messageId
prefix) and must hold exactly what was sent: no loss, no duplicates. The load generator is an
asyncio HTTP/1.1 client in this process; it shares the machine's cores with the server, so its
own CPU use is printed with the results. The server is stopped and the bench database dropped
whatever happens. ``--profile DIR`` samples the gunicorn workers with py-spy during phases a
and b (run under ``uv run --with py-spy``); sampling slows the server, so profile separately.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PG_ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BENCH_DB = "switchboard_bench"
RATE_LIMIT = 1_000_000_000  # requests per second: the limiter must never answer 429 here
BATCH_SIZE = 100
USERS = 10_000  # userIds are drawn from this pool, so profiles are both created and updated
EVENT_COLUMNS = (
    "source_id",
    "message_id",
    "type",
    "user_id",
    "anonymous_id",
    "event",
    "name",
    "group_id",
    "previous_id",
    "timestamp",
    "original_timestamp",
    "sent_at",
    "received_at",
    "profile_id",
    "payload",
)
LIBRARY = {"name": "analytics-python", "version": "2.3.3"}


@dataclass(frozen=True)
class Plan:
    """Durations and load shape; --quick shortens every phase."""

    warmup_seconds: float
    single_seconds: float
    batch_seconds: float
    rate_seconds: float
    ceiling_max_seconds: float
    single_concurrency: int
    batch_concurrency: int
    rate: float
    workers: int
    threads: int


# Payloads ---------------------------------------------------------------------------------


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track_event(message_id: str, rng: random.Random, *, with_type: bool) -> dict[str, Any]:
    """A server-side SDK's track call: userId, event name, a few properties, library context."""
    event: dict[str, Any] = {
        "messageId": message_id,
        "userId": f"user-{rng.randrange(USERS)}",
        "event": "Order Completed",
        "properties": {
            "order_id": message_id,
            "revenue": round(rng.uniform(5, 500), 2),
            "currency": "USD",
            "products": [{"sku": f"SKU-{rng.randrange(1000)}", "quantity": 1 + rng.randrange(3)}],
        },
        "timestamp": iso_now(),
    }
    if with_type:
        event["type"] = "track"
    else:
        event["context"] = {"library": LIBRARY}
    return event


def batch_body(prefix: str, rng: random.Random) -> bytes:
    """What analytics-python posts to /v1/batch: envelope context and sentAt, typed items."""
    items = [track_event(f"{prefix}-{j}", rng, with_type=True) for j in range(BATCH_SIZE)]
    return orjson.dumps({"batch": items, "context": {"library": LIBRARY}, "sentAt": iso_now()})


# A minimal HTTP/1.1 keep-alive client ---------------------------------------------------------


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def _complete(self) -> None:
        if self.waiter is None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"\r\ncontent-length:")
        if start < 0:
            self.waiter.set_exception(ConnectionError("response without Content-Length"))
            return
        stop = head.find(b"\r\n", start + 2)
        length = int(head[start + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        if b"\r\nconnection: close" in head:
            self.closed = True
        waiter, self.waiter = self.waiter, None
        waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int) -> HttpConnection:
    _, protocol = await asyncio.get_running_loop().create_connection(HttpConnection, HOST, port)
    return protocol


def http_post(path: str, body: bytes, authorization: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# Measurement ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one phase sent and what came back."""

    requests: int = 0
    events: int = 0
    ok_events: int = 0
    stored_reported: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    retries: int = 0
    max_connections: int = 0

    def record(self, status: int, body: bytes, events: int, latency: float) -> None:
        self.statuses[str(status)] += 1
        self.latencies.append(latency)
        if status == 200:
            self.ok_events += events
            self.stored_reported += int(orjson.loads(body).get("stored", 0))

    def failed(self, reason: str) -> None:
        self.statuses[reason] += 1


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(fraction * len(ordered) + 0.999999) - 1))
    return ordered[index]


class CpuMeter:
    """CPU seconds of the whole machine and of named process groups, from /proc."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.start = self.sample()

    def pids(self) -> dict[str, list[int]]:
        server = [self.server_pid, *child_pids(self.server_pid)]
        database: list[int] = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if (entry / "comm").read_text().strip() in ("postgres", "redis-server"):
                        database.append(int(entry.name))
        return {"server": server, "database": database}

    def sample(self) -> dict[str, float]:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(v) for v in fields]
        tick = os.sysconf("SC_CLK_TCK")
        busy = sum(ticks[:8]) - ticks[3] - ticks[4]
        values = {"wall": time.monotonic(), "busy": busy / tick, "client": time.process_time()}
        for group, pids in self.pids().items():
            values[group] = sum(process_cpu(pid) for pid in pids)
        return values

    def usage(self) -> dict[str, float]:
        """Cores in use on average since the meter started, per group."""
        end = self.sample()
        wall = end["wall"] - self.start["wall"]
        return {k: round((end[k] - self.start[k]) / wall, 2) for k in end if k != "wall"}


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def process_cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class PhaseResult:
    name: str
    requests: int
    events: int
    seconds: float
    events_per_second: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[str, int]
    stored_reported: int
    rows_counted: int
    verified: bool
    cpu_cores: dict[str, float]
    note: str = ""


def summarise(
    name: str, tally: Tally, seconds: float, rows: int, cpu: dict[str, float], note: str = ""
) -> PhaseResult:
    clean = tally.statuses.get("200", 0) == tally.requests and tally.retries == 0
    return PhaseResult(
        name=name,
        requests=tally.requests,
        events=tally.events,
        seconds=round(seconds, 2),
        events_per_second=round(tally.ok_events / seconds, 1),
        requests_per_second=round(tally.requests / seconds, 1),
        p50_ms=round(percentile(tally.latencies, 0.50) * 1000, 2),
        p99_ms=round(percentile(tally.latencies, 0.99) * 1000, 2),
        max_ms=round(max(tally.latencies, default=float("nan")) * 1000, 2),
        statuses=dict(tally.statuses),
        stored_reported=tally.stored_reported,
        rows_counted=rows,
        verified=clean and rows == tally.events == tally.stored_reported,
        cpu_cores=cpu,
        note=note,
    )


async def closed_loop(
    port: int,
    concurrency: int,
    seconds: float,
    make_request: Callable[[int], tuple[bytes, int]],
) -> tuple[Tally, float]:
    """``concurrency`` connections, each sending its next request as soon as the last returns.

    No request is started after the deadline, and every started one is waited for, so what
    was sent is exactly what the server was asked to store.
    """
    tally = Tally(max_connections=concurrency)
    numbers = itertools.count()
    connections = [await connect(port) for _ in range(concurrency)]
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(connection: HttpConnection) -> None:
        while time.perf_counter() < deadline:
            data, events = make_request(next(numbers))
            tally.requests += 1
            tally.events += events
            sent = time.perf_counter()
            try:
                status, body = await connection.request(data)
            except ConnectionError as exc:
                tally.failed(type(exc).__name__)
                connection = await connect(port)
                continue
            tally.record(status, body, events, time.perf_counter() - sent)
            if connection.closed:
                connection = await connect(port)
        connection.close()

    await asyncio.gather(*(worker(c) for c in connections))
    return tally, time.perf_counter() - started


async def open_loop(
    port: int, rate: float, seconds: float, make_request: Callable[[int], tuple[bytes, int]]
) -> tuple[Tally, float]:
    """Send request i at start + i/rate whether or not earlier ones have been answered.

    A request takes an idle keep-alive connection or opens a new one, so a slow server meets
    more concurrent requests, as it would from many independent clients. Latency counts from
    the scheduled send time. A reused connection that the server closed while idle is retried
    once on a new one (the messageId makes the retry safe, and it is counted).
    """
    tally = Tally()
    idle: list[HttpConnection] = [await connect(port) for _ in range(4)]
    total = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    in_flight = 0

    async def send(number: int, scheduled: float) -> None:
        nonlocal in_flight
        in_flight += 1
        tally.max_connections = max(tally.max_connections, in_flight)
        data, events = make_request(number)
        tally.requests += 1
        tally.events += events
        for attempt in range(2):
            connection = None
            while idle and connection is None:
                candidate = idle.pop()
                connection = None if candidate.closed else candidate
            reused = connection is not None
            if connection is None:
                connection = await connect(port)
            try:
                status, body = await connection.request(data)
            except ConnectionError as exc:
                if reused and attempt == 0:
                    tally.retries += 1
                    continue
                tally.failed(type(exc).__name__)
                break
            tally.record(status, body, events, time.perf_counter() - scheduled)
            if not connection.closed:
                idle.append(connection)
            break
        in_flight -= 1

    started = time.perf_counter() + 0.01
    for number in range(total):
        scheduled = started + number / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(send(number, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    elapsed = time.perf_counter() - started
    for connection in idle:
        connection.close()
    return tally, elapsed


# Databases --------------------------------------------------------------------------------


class BenchDatabase:
    """A fresh database for one run, the environment the server needs, and direct access."""

    kind = ""
    placeholder = "?"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def create(self) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        raise NotImplementedError

    def server_env(self) -> dict[str, str]:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def count_prefix(self, prefix: str) -> int:
        rows = self.query(
            "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM destinations_event "
            f"WHERE message_id LIKE {self.placeholder}",
            [f"{prefix}-%"],
        )
        total, distinct = rows[0]
        if total != distinct:
            raise AssertionError(f"{prefix}: {total} rows but {distinct} distinct messageIds")
        return int(total)

    def ceiling(
        self, rows: Iterator[tuple[Any, ...]], count: int, max_seconds: float
    ) -> list[tuple[str, int, float]]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError


class SqliteDatabase(BenchDatabase):
    kind = "sqlite"

    @property
    def path(self) -> Path:
        return self.data_dir / "switchboard.sqlite3"

    def create(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def drop(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def server_env(self) -> dict[str, str]:
        return {"SWITCHBOARD_DATA_DIR": str(self.data_dir)}

    def connect(self) -> sqlite3.Connection:
        # The same pragmas as dashboard/settings.py, so the ceiling writes the way the app does.
        connection = sqlite3.connect(self.path, isolation_level=None, timeout=20)
        connection.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=20000;"
        )
        return connection

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        connection = self.connect()
        try:
            return connection.execute(sql, params).fetchall()
        finally:
            connection.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        connection = self.connect()
        try:
            connection.execute(sql, params)
        finally:
            connection.close()

    def ceiling(
        self, rows: Iterator[tuple[Any, ...]], count: int, max_seconds: float
    ) -> list[tuple[str, int, float]]:
        connection = self.connect()
        sql = (
            f"INSERT INTO destinations_event ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join(['?'] * len(EVENT_COLUMNS))})"
        )
        inserted = 0
        started = time.perf_counter()
        try:
            while inserted < count and time.perf_counter() - started < max_seconds:
                chunk = list(itertools.islice(rows, min(BATCH_SIZE, count - inserted)))
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(sql, [sqlite_row(row) for row in chunk])
                connection.execute("COMMIT")
                inserted += len(chunk)
        finally:
            connection.close()
        return [("executemany", inserted, time.perf_counter() - started)]

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"


def sqlite_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # Django's SQLite backend stores datetimes as naive UTC text.
    return tuple(
        value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
        if isinstance(value, datetime)
        else value
        for value in row
    )


class PostgresDatabase(BenchDatabase):
    kind = "postgres"
    placeholder = "%s"

    def __init__(self, data_dir: Path, redis_url: str) -> None:
        super().__init__(data_dir)
        self.redis_url = redis_url
        admin = psycopg.conninfo.conninfo_to_dict(PG_ADMIN_DSN)
        admin["dbname"] = PG_BENCH_DB
        self.dsn = psycopg.conninfo.make_conninfo("", **{k: v for k, v in admin.items() if v})

    def create(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {PG_BENCH_DB}")

    def drop(self) -> None:
        try:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def url(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        user = info.get("user") or "postgres"
        password = f":{info['password']}" if info.get("password") else ""
        host = info.get("host") or "127.0.0.1"
        port = info.get("port") or "5432"
        return f"postgres://{user}{password}@{host}:{port}/{PG_BENCH_DB}"

    def server_env(self) -> dict[str, str]:
        env = {"SWITCHBOARD_DATA_DIR": str(self.data_dir), "DATABASE_URL": self.url()}
        if self.redis_url:
            env["CACHE_URL"] = self.redis_url
        return env

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as connection:
            return connection.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with psycopg.connect(self.dsn) as connection:
            connection.execute(sql, params)  # type: ignore[arg-type]

    def ceiling(
        self, rows: Iterator[tuple[Any, ...]], count: int, max_seconds: float
    ) -> list[tuple[str, int, float]]:
        columns = ", ".join(EVENT_COLUMNS)
        row_sql = "(" + ", ".join(["%s"] * (len(EVENT_COLUMNS) - 1) + ["%s::jsonb"]) + ")"
        results: list[tuple[str, int, float]] = []
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            # Multi-row INSERT: the statement the app sends, minus everything around it.
            inserted = 0
            started = time.perf_counter()
            while inserted < count and time.perf_counter() - started < max_seconds:
                chunk = list(itertools.islice(rows, min(BATCH_SIZE, count - inserted)))
                sql = f"INSERT INTO destinations_event ({columns}) VALUES " + ", ".join(
                    [row_sql] * len(chunk)
                )
                with connection.transaction():
                    connection.execute(sql, [v for row in chunk for v in row])  # type: ignore[arg-type]
                inserted += len(chunk)
            results.append(("multi-row INSERT", inserted, time.perf_counter() - started))
            # COPY, 100 rows per transaction too.
            copied = 0
            started = time.perf_counter()
            while copied < count and time.perf_counter() - started < max_seconds:
                chunk = list(itertools.islice(rows, min(BATCH_SIZE, count - copied)))
                with (
                    connection.transaction(),
                    connection.cursor() as cursor,
                    cursor.copy(f"COPY destinations_event ({columns}) FROM STDIN") as copy,  # type: ignore[arg-type]
                ):
                    for row in chunk:
                        copy.write_row(row)
                copied += len(chunk)
            results.append(("COPY", copied, time.perf_counter() - started))
        return results

    def version(self) -> str:
        return "PostgreSQL " + str(self.query("SHOW server_version")[0][0]).split()[0]


# The server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def base_env(database: BenchDatabase) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CACHE_URL", "DJANGO_DEBUG", "SWITCHBOARD_PRODUCTION")
    }
    env.update(database.server_env())
    env["LOG_LEVEL"] = "WARNING"
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


class Server:
    """gunicorn as ``manage.py start`` runs it, in its own process group so all of it stops."""

    def __init__(self, env: dict[str, str], port: int, workers: int, threads: int) -> None:
        self.port = port
        self.log_path = Path(env["SWITCHBOARD_DATA_DIR"]) / "gunicorn.log"
        self.log = self.log_path.open("wb")
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "dashboard.wsgi:application",
            "--bind",
            f"{HOST}:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
        ]
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/healthz", timeout=2):
                    pass
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /healthz in time")

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        # Workers that outlived the master (they should not) go with the group too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


class Profiler:
    """py-spy on each gunicorn worker for one phase (collapsed stacks, CPU samples only)."""

    def __init__(self, directory: Path | None, server: Server) -> None:
        self.directory = directory
        self.server = server
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, label: str, seconds: float) -> None:
        if self.directory is None:
            return
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            raise RuntimeError("--profile needs py-spy: uv run --with py-spy python bench/...")
        self.directory.mkdir(parents=True, exist_ok=True)
        for pid in self.server.worker_pids():
            output = self.directory / f"{label}-{pid}.txt"
            self.children.append(
                subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "200",
                        "--format",
                        "raw",
                        "--output",
                        str(output),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(0.5)  # let py-spy attach before the load starts

    def finish(self) -> None:
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children.clear()


# One database, all phases ---------------------------------------------------------------------


def ceiling_rows(source_id: int, profiles: dict[str, int], count: int) -> Iterator[tuple[Any, ...]]:
    """Rows shaped like the ones the app writes for phase b's events."""
    rng = random.Random(4)
    for number in range(count):
        item = track_event(f"d-{number}", rng, with_type=True)
        now = datetime.now(UTC)
        item["context"] = {"library": LIBRARY}
        item["sentAt"] = item["receivedAt"] = item["timestamp"]
        moment = datetime.fromisoformat(item["timestamp"])
        yield (
            source_id,
            item["messageId"],
            "track",
            item["userId"],
            None,
            item["event"],
            None,
            None,
            None,
            moment,
            moment,
            moment,
            now,
            profiles.get(item["userId"]),
            orjson.dumps(item).decode(),
        )


def run_database(database: BenchDatabase, plan: Plan, profile_dir: Path | None) -> dict[str, Any]:
    print(f"\n=== {database.kind}: preparing a fresh database", flush=True)
    results: list[PhaseResult] = []
    server: Server | None = None
    try:
        database.create()
        env = base_env(database)
        manage(env, "migrate", "--noinput", "-v0")
        write_key = manage(env, "createsource", "Bench").strip().splitlines()[-1]
        placeholder = database.placeholder
        database.execute(
            f"UPDATE destinations_source SET rate_limit_per_second = {placeholder} "
            f"WHERE write_key = {placeholder}",
            [RATE_LIMIT, write_key],
        )
        source_id = int(
            database.query(
                f"SELECT id FROM destinations_source WHERE write_key = {placeholder}", [write_key]
            )[0][0]
        )
        port = free_port()
        server = Server(env, port, plan.workers, plan.threads)
        server.wait_ready()
        print(
            f"gunicorn on {HOST}:{port}: {plan.workers} workers x {plan.threads} threads "
            f"(gthread); {database.version()}",
            flush=True,
        )
        authorization = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        rng = random.Random(7)

        def single(prefix: str) -> Callable[[int], tuple[bytes, int]]:
            def make(number: int) -> tuple[bytes, int]:
                event = track_event(f"{prefix}-{number}", rng, with_type=False)
                return http_post("/v1/track", orjson.dumps(event), authorization), 1

            return make

        def batch(number: int) -> tuple[bytes, int]:
            return http_post("/v1/batch", batch_body(f"b-{number}", rng), authorization), 100

        profiler = Profiler(profile_dir, server)

        def phase(
            label: str, prefix: str, run: Callable[[], Any], note: str, seconds: float
        ) -> PhaseResult:
            profiler.start(f"{database.kind}-{label}", seconds)
            meter = CpuMeter(server.process.pid if server else 0)
            tally, elapsed = asyncio.run(run())
            cpu = meter.usage()
            profiler.finish()
            rows = database.count_prefix(prefix)
            result = summarise(label, tally, elapsed, rows, cpu, note)
            report_phase(result, tally)
            return result

        warmup = phase(
            "warm-up",
            "w",
            lambda: closed_loop(port, plan.single_concurrency, plan.warmup_seconds, single("w")),
            "",
            plan.warmup_seconds,
        )
        results.append(
            phase(
                "a. single /v1/track, closed loop",
                "a",
                lambda: closed_loop(
                    port, plan.single_concurrency, plan.single_seconds, single("a")
                ),
                f"{plan.single_concurrency} connections",
                plan.single_seconds,
            )
        )
        results.append(
            phase(
                "b. /v1/batch x100, closed loop",
                "b",
                lambda: closed_loop(port, plan.batch_concurrency, plan.batch_seconds, batch),
                f"{plan.batch_concurrency} connections",
                plan.batch_seconds,
            )
        )
        rate_result = phase(
            f"c. single /v1/track at {plan.rate:g}/s, open loop",
            "c",
            lambda: open_loop(port, plan.rate, plan.rate_seconds, single("c")),
            "",
            plan.rate_seconds,
        )
        results.append(rate_result)

        server.stop()
        server = None
        print("server stopped; direct inserts for the ceiling", flush=True)
        batch_rows = results[1].rows_counted
        profiles = dict(
            database.query("SELECT user_id, id FROM destinations_profile WHERE user_id IS NOT NULL")
        )
        rows = ceiling_rows(source_id, profiles, batch_rows * 2)
        ceilings: list[dict[str, Any]] = []
        for method, inserted, seconds in database.ceiling(
            rows, batch_rows, plan.ceiling_max_seconds
        ):
            ceilings.append(
                {
                    "method": method,
                    "rows": inserted,
                    "seconds": round(seconds, 2),
                    "rows_per_second": round(inserted / seconds, 1),
                }
            )
            print(
                f"d. ceiling ({method}, {BATCH_SIZE}-row transactions, one connection): "
                f"{inserted:,} rows in {seconds:.1f} s = {inserted / seconds:,.0f} rows/s",
                flush=True,
            )
        stored = database.count_prefix("d")
        expected = sum(c["rows"] for c in ceilings)
        print(f"   events table holds {stored:,} ceiling rows; inserted {expected:,}", flush=True)
        if stored != expected:
            raise AssertionError("ceiling rows do not match what was inserted")
        return {
            "database": database.kind,
            "version": database.version(),
            "workers": plan.workers,
            "threads": plan.threads,
            "cache": "redis" if "CACHE_URL" in env else "locmem",
            "warmup": asdict(warmup),
            "phases": [asdict(r) for r in results],
            "ceiling": ceilings,
        }
    finally:
        if server is not None:
            server.stop()
        database.drop()


def report_phase(result: PhaseResult, tally: Tally) -> None:
    cpu = result.cpu_cores
    print(
        f"{result.name}: {result.requests:,} requests, {result.events:,} events in "
        f"{result.seconds:.1f} s = {result.events_per_second:,.0f} events/s, "
        f"{result.requests_per_second:,.0f} req/s; latency p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, max {result.max_ms:.1f} ms"
        + (f" ({result.note})" if result.note else ""),
        flush=True,
    )
    print(
        f"   statuses {result.statuses}; retries {tally.retries}; most connections "
        f"{tally.max_connections}; CPU cores busy: machine {cpu.get('busy', 0)}, "
        f"gunicorn {cpu.get('server', 0)}, database {cpu.get('database', 0)}, "
        f"load generator {cpu.get('client', 0)}",
        flush=True,
    )
    verdict = "OK" if result.verified else "MISMATCH"
    print(
        f"   verify: events sent {result.events:,}, stored per responses "
        f"{result.stored_reported:,}, rows in table {result.rows_counted:,}: {verdict}",
        flush=True,
    )


# Entry point ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{int(memory) / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }


def print_summary(runs: list[dict[str, Any]]) -> None:
    print("\n=== summary")
    header = (
        f"{'database':10} {'phase':42} {'events/s':>10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    )
    print(header)
    for run in runs:
        for phase in run["phases"]:
            print(
                f"{run['database']:10} {phase['name'][:42]:42} "
                f"{phase['events_per_second']:>10,.0f} "
                f"{phase['requests_per_second']:>8,.0f} {phase['p50_ms']:>8.1f} "
                f"{phase['p99_ms']:>8.1f}" + ("" if phase["verified"] else "  COUNT MISMATCH")
            )
        for ceiling in run["ceiling"]:
            name = f"d. ceiling, {ceiling['method']}"
            print(f"{run['database']:10} {name:42} {ceiling['rows_per_second']:>10,.0f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="about a minute in all")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (start.py: 2)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (start.py: 8)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections in phase a")
    parser.add_argument("--batch-concurrency", type=int, default=8, help="connections, phase b")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s in phase c")
    parser.add_argument(
        "--redis",
        default="redis://127.0.0.1:6379/14",
        help="CACHE_URL for the PostgreSQL run (the production setup); 'none' for local memory",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--profile", type=Path, help="py-spy the workers in phases a and b")
    args = parser.parse_args(argv)

    quick = args.quick
    plan = Plan(
        warmup_seconds=1 if quick else 2,
        single_seconds=5 if quick else 15,
        batch_seconds=5 if quick else 15,
        rate_seconds=5 if quick else 20,
        ceiling_max_seconds=5 if quick else 20,
        single_concurrency=args.concurrency,
        batch_concurrency=args.batch_concurrency,
        rate=args.rate,
        workers=args.workers,
        threads=args.threads,
    )
    info = machine()
    print(
        f"machine: {info['cores']} cores, {info['cpu']}, {info['memory']}; Python "
        f"{info['python']}, SQLite {info['sqlite']}",
        flush=True,
    )
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    runs: list[dict[str, Any]] = []
    for kind in kinds:
        data_dir = Path(tempfile.mkdtemp(prefix=f"switchboard-bench-{kind}-"))
        database: BenchDatabase
        if kind == "sqlite":
            database = SqliteDatabase(data_dir)
        else:
            redis_url = "" if args.redis == "none" else args.redis
            database = PostgresDatabase(data_dir, redis_url)
        runs.append(run_database(database, plan, args.profile))
    print_summary(runs)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "plan": asdict(plan), "runs": runs}))
    failed = [
        (run["database"], phase["name"])
        for run in runs
        for phase in [run["warmup"], *run["phases"]]
        if not phase["verified"]
    ]
    if failed:
        print(f"\nCOUNT MISMATCH in {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

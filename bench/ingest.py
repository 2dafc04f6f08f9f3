"""Ingest benchmark: how many Segment events per second Switchboard accepts, and how fast.

Run from the repository root::

    uv run python bench/ingest.py                   # SQLite, then PostgreSQL: about 3 minutes
    uv run python bench/ingest.py --write-docs      # the same, then rewrite docs/benchmarks.md
    uv run python bench/ingest.py --db postgres     # one backend
    uv run python bench/ingest.py --quick           # short phases: a smoke test
    uv run --with py-spy python bench/ingest.py --db postgres --profile /tmp/ingest-profile

For each backend the script makes a fresh database (a temporary ``SWITCHBOARD_DATA_DIR`` for
the embedded SQLite default; a ``switchboard_bench`` database plus Redis as the cache for
PostgreSQL), starts the server with ``manage.py start`` as production does (migrations, then
the web server processes of ``dashboard/webserver.py``, and the Celery delivery worker, idle
here: no destinations) on a free loopback port, creates a source, lifts its rate limit and
runs these phases in turn:

s. seed: one batched event for each of the USERS user ids, so that every profile exists and
   the measured phases take the steady-state path (events from known users);
a. POST /v1/track, one event per request, closed loop: N connections, each sending its next
   request as soon as the previous answer arrived. Events/s and latency p50/p99;
b. POST /v1/batch with 100 events per request, closed loop: events/s, latency per request;
c. POST /v1/track offered at a fixed rate, open loop: request i is sent at start + i / rate
   whatever happened to the earlier ones, and its latency counts from that scheduled time, so a
   stalled server cannot hide its queue;
d. the ceiling, with the server stopped: phase b's rows (new messageIds) inserted straight into
   the events table by one connection, 100 rows per transaction: a plain multi-row INSERT (an
   ``executemany`` on SQLite), and COPY on PostgreSQL.

The load generator is an asyncio HTTP/1.1 client in this process, separate from the server's
processes but sharing the machine's cores with them; the CPU each side used is printed, and
what other processes used. The machine may be shared, so before each phase the script waits
(up to 30 s) for them to go quiet. After each phase the rows are counted by messageId prefix
and must match what was sent and what the answers reported. The server is stopped and the
bench database dropped whatever happens.

``--profile DIR`` samples the web server processes with py-spy (``--gil``: only the thread running
Python, so the samples show where CPU time goes) and prints the heaviest application functions;
sampling slows the server, so profiled numbers are not the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import itertools
import math
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
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from measure import (
    PG_ADMIN_DSN,
    Profiler,
    children,
    command_output,
    cpu_model,
    descendants,
    percentile,
    pg_admin,
    pg_query,
    pg_recreate,
    pg_version,
    pids_named,
    process_cpu_seconds,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
HOST = "127.0.0.1"
PG_BENCH_DB = "switchboard_bench"
REDIS_URL = "redis://127.0.0.1:6379/14"
RATE_LIMIT = 1_000_000_000  # requests/s: the per-source limiter must never answer 429 here
BATCH_SIZE = 100
USERS = 10_000  # userIds are drawn from this pool
LIBRARY = {"name": "analytics-python", "version": "2.3.3"}
# destinations_event's columns as destinations/ingest/store.py writes them.
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
# Targets on a 2-core machine with PostgreSQL (the issue that asked for this benchmark).
TARGET_BATCH_EVENTS = 10_000  # events/s in 100-event batches
TARGET_SINGLE_REQUESTS = 1_000  # single-event requests/s
TARGET_P99_MS = 50  # p99 at the fixed offered rate
DISTURBED_CORES = 0.3  # a phase during which other processes used more is flagged

# A request factory returns the bytes of request number n and how many events it carries.
MakeRequest = Callable[[int], tuple[bytes, int]]


@dataclass(frozen=True)
class Plan:
    single_seconds: float
    batch_seconds: float
    rate_seconds: float
    single_connections: int
    batch_connections: int
    rate: float
    workers: int
    cache_url: str


# Payloads -------------------------------------------------------------------------------------


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track_event(message_id: str, user: int, rng: random.Random) -> dict[str, Any]:
    """A server-side SDK's track call: userId, event name, a few properties."""
    return {
        "type": "track",
        "messageId": message_id,
        "userId": f"user-{user}",
        "event": "Order Completed",
        "properties": {
            "order_id": message_id,
            "revenue": round(rng.uniform(5, 500), 2),
            "currency": "USD",
            "products": [{"sku": f"SKU-{rng.randrange(1000)}", "quantity": 1 + rng.randrange(3)}],
        },
        "timestamp": iso_now(),
    }


def http_post(path: str, document: dict[str, Any], authorization: str) -> bytes:
    body = orjson.dumps(document)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def single_requests(prefix: str, authorization: str) -> MakeRequest:
    rng = random.Random(prefix)

    def make(number: int) -> tuple[bytes, int]:
        event = track_event(f"{prefix}-{number}", rng.randrange(USERS), rng)
        event["context"] = {"library": LIBRARY}
        return http_post("/v1/track", event, authorization), 1

    return make


def batch_requests(prefix: str, authorization: str, *, seed: bool = False) -> MakeRequest:
    """What analytics-python posts to /v1/batch; ``seed`` gives batch n the users n*100...+99."""
    rng = random.Random(prefix)

    def make(number: int) -> tuple[bytes, int]:
        users = (
            range(number * BATCH_SIZE, (number + 1) * BATCH_SIZE)
            if seed
            else [rng.randrange(USERS) for _ in range(BATCH_SIZE)]
        )
        items = [track_event(f"{prefix}-{number}-{j}", u, rng) for j, u in enumerate(users)]
        document = {"batch": items, "context": {"library": LIBRARY}, "sentAt": iso_now()}
        return http_post("/v1/batch", document, authorization), len(items)

    return make


# A minimal HTTP/1.1 keep-alive client -----------------------------------------------------------


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

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if self.waiter is None or end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip() == b"close":
                self.closed = True
        if len(self.buffer) < end + 4 + length:
            return
        status, body = int(head[9:12]), bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
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


# Load -----------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one phase sent and what came back."""

    requests: int = 0
    events: int = 0
    ok_events: int = 0
    stored_reported: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    most_connections: int = 0

    def sent(self, events: int) -> None:
        self.requests += 1
        self.events += events

    def answered(self, status: int, body: bytes, events: int, latency: float) -> None:
        self.statuses[str(status)] += 1
        self.latencies.append(latency)
        if status == 200:
            self.ok_events += events
            self.stored_reported += int(orjson.loads(body).get("stored", 0))


async def closed_loop(
    port: int, connections: int, seconds: float, make: MakeRequest, limit: int | None = None
) -> Tally:
    """``connections`` clients, each sending its next request as soon as the last is answered.

    Nothing starts after the deadline (or past ``limit`` requests) and every started request is
    waited for, so what was sent is exactly what the server was asked to store.
    """
    tally = Tally(most_connections=connections)
    numbers = iter(range(limit)) if limit is not None else itertools.count()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        connection = await connect(port)
        while time.perf_counter() < deadline and (number := next(numbers, None)) is not None:
            data, events = make(number)
            tally.sent(events)
            sent = time.perf_counter()
            try:
                status, body = await connection.request(data)
            except ConnectionError as exc:
                tally.statuses[type(exc).__name__] += 1
            else:
                tally.answered(status, body, events, time.perf_counter() - sent)
            if connection.closed:
                connection = await connect(port)
        connection.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return tally


async def open_loop(port: int, rate: float, seconds: float, make: MakeRequest) -> Tally:
    """Send request i at start + i / rate whether or not earlier ones have been answered.

    A request takes an idle keep-alive connection or opens a new one, so a slow server meets
    more concurrent requests, as it would from many independent clients. Latency counts from the
    scheduled send time.
    """
    tally = Tally()
    idle: list[HttpConnection] = []
    in_flight = 0

    async def send(number: int, scheduled: float) -> None:
        nonlocal in_flight
        in_flight += 1
        tally.most_connections = max(tally.most_connections, in_flight)
        data, events = make(number)
        tally.sent(events)
        while idle and idle[-1].closed:
            idle.pop()
        connection = idle.pop() if idle else await connect(port)
        try:
            status, body = await connection.request(data)
        except ConnectionError:
            # The server may close an idle keep-alive connection just as it is reused; the
            # messageId makes sending again on a new connection safe.
            connection = await connect(port)
            status, body = await connection.request(data)
        tally.answered(status, body, events, time.perf_counter() - scheduled)
        idle.append(connection)
        in_flight -= 1

    tasks = []
    started = time.perf_counter() + 0.01
    for number in range(int(rate * seconds)):
        scheduled = started + number / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(send(number, scheduled)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return tally


class CpuMeter:
    """Average cores busy during a phase: machine, server processes, databases, this process."""

    def __init__(self, server_pid: int, database_pids: Callable[[], list[int]]) -> None:
        self.server_pid = server_pid
        self.database_pids = database_pids
        self.start = self.totals()
        self.start_pids = self.pids()

    def totals(self) -> dict[str, float]:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
        return {
            "wall": time.monotonic(),
            "machine": busy / os.sysconf("SC_CLK_TCK"),
            "load generator": time.process_time(),
        }

    def pids(self) -> dict[str, dict[int, float]]:
        server = [self.server_pid, *descendants(self.server_pid)]
        database = self.database_pids()
        return {
            "server": {pid: process_cpu_seconds(pid) for pid in server},
            "database": {pid: process_cpu_seconds(pid) for pid in database},
        }

    def cores(self) -> dict[str, float]:
        """Cores busy on average since the meter started; "other" is everything not ours."""
        end, end_pids = self.totals(), self.pids()
        wall = end["wall"] - self.start["wall"]
        used = {k: (end[k] - self.start[k]) / wall for k in ("machine", "load generator")}
        for group, pids in end_pids.items():
            before = self.start_pids[group]
            used[group] = sum(cpu - before.get(pid, 0.0) for pid, cpu in pids.items()) / wall
        ours = used["server"] + used["database"] + used["load generator"]
        used["other"] = max(0.0, used["machine"] - ours)
        return {k: round(v, 2) for k, v in used.items()}


def wait_for_quiet(
    meter: Callable[[], CpuMeter], limit: float = 30, threshold: float = DISTURBED_CORES
) -> None:
    """Wait, at most ``limit`` seconds, until the idle server is the only thing using CPU.

    The machine may be shared (test suites, builds): a phase started while something else
    runs would measure that too. What other processes used during a phase is reported anyway.
    """
    started = time.monotonic()
    for _ in range(math.ceil(limit)):
        probe = meter()
        time.sleep(1)
        used = probe.cores()
        busy = used["machine"] - used["server"]
        if busy < threshold:
            break
    waited = time.monotonic() - started
    if waited > 2:
        print(f"   waited {waited:.0f} s for other processes ({busy:.2f} cores busy at the end)")


# Databases ------------------------------------------------------------------------------------


class SqliteBackend:
    """The embedded default: SQLite in WAL mode in a temporary SWITCHBOARD_DATA_DIR."""

    kind = "sqlite"
    title = "SQLite (embedded default, WAL)"
    placeholder = "?"
    ceiling_methods = ("executemany INSERT",)

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def create(self) -> None:
        pass

    def drop(self) -> None:
        pass

    def server_env(self) -> dict[str, str]:
        return {}

    def connect(self) -> sqlite3.Connection:
        # dashboard/settings.py's pragmas, so the ceiling writes the way the app does.
        connection = sqlite3.connect(self.data_dir / "switchboard.sqlite3", isolation_level=None)
        connection.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=20000;"
        )
        return connection

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as connection:
            return connection.execute(sql, params).fetchall()

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    def database_pids(self) -> list[int]:
        return []  # SQLite works inside the server's processes

    def insert(self, method: str, rows: list[tuple[Any, ...]]) -> None:
        sql = (
            f"INSERT INTO destinations_event ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)})"
        )
        with contextlib.closing(self.connect()) as connection:
            for start in range(0, len(rows), BATCH_SIZE):
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(sql, rows[start : start + BATCH_SIZE])
                connection.execute("COMMIT")


class PostgresBackend:
    """DATABASE_URL on a fresh database of the local PostgreSQL server; Redis as CACHE_URL."""

    kind = "postgres"
    title = "PostgreSQL"
    placeholder = "%s"
    ceiling_methods = ("multi-row INSERT", "COPY")
    dsn = f"postgresql://postgres@127.0.0.1:5432/{PG_BENCH_DB}"

    def __init__(self, data_dir: Path, cache_url: str) -> None:
        self.data_dir = data_dir
        self.cache_url = cache_url

    def create(self) -> None:
        self.drop()
        pg_recreate(PG_BENCH_DB)

    def drop(self) -> None:
        pg_admin(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")

    def server_env(self) -> dict[str, str]:
        env = {"DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}"}
        if self.cache_url:
            env["CACHE_URL"] = self.cache_url
        return env

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return pg_query(self.dsn, sql, params)

    def version(self) -> str:
        return pg_version(self.dsn)

    def database_pids(self) -> list[int]:
        """The PostgreSQL processes working for the bench database (the server is shared), the
        WAL writer, checkpointer and background writer, and Redis."""
        rows = self.query(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND (datname = "
            "current_database() OR backend_type IN ('walwriter', 'checkpointer', "
            "'background writer'))"
        )
        return [int(pid) for (pid,) in rows] + pids_named("redis-server")

    def insert(self, method: str, rows: list[tuple[Any, ...]]) -> None:
        columns = ", ".join(EVENT_COLUMNS)
        row_sql = "(" + ", ".join(["%s"] * (len(EVENT_COLUMNS) - 1) + ["%s::jsonb"]) + ")"
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            for start in range(0, len(rows), BATCH_SIZE):
                chunk = rows[start : start + BATCH_SIZE]
                with connection.transaction():
                    if method == "COPY":
                        sql = f"COPY destinations_event ({columns}) FROM STDIN"
                        with connection.cursor().copy(sql) as copy:
                            for row in chunk:
                                copy.write_row(row)
                    else:
                        sql = f"INSERT INTO destinations_event ({columns}) VALUES " + ", ".join(
                            [row_sql] * len(chunk)
                        )
                        connection.execute(sql, [v for row in chunk for v in row])


Backend = SqliteBackend | PostgresBackend


def count_rows(backend: Backend, prefix: str) -> int:
    """Events stored with this messageId prefix; a duplicate would be a bug, so it is fatal."""
    total, distinct = backend.query(
        "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM destinations_event "
        f"WHERE message_id LIKE {backend.placeholder}",
        [f"{prefix}-%"],
    )[0]
    if total != distinct:
        raise AssertionError(f"{prefix}: {total} rows but {distinct} distinct messageIds")
    return int(total)


def copied_rows(backend: Backend, source: str, prefix: str) -> list[tuple[Any, ...]]:
    """The rows the app stored for phase ``source``, with messageIds moved to ``prefix``."""
    payload = "payload::text" if backend.kind == "postgres" else "payload"
    rows = backend.query(
        f"SELECT {', '.join(EVENT_COLUMNS[:-1])}, {payload} FROM destinations_event "
        f"WHERE message_id LIKE {backend.placeholder} ORDER BY id",
        [f"{source}-%"],
    )
    return [(row[0], prefix + row[1][len(source) :], *row[2:]) for row in rows]


# The server -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


class Server:
    """``manage.py start`` in its own process group, so all of it can be stopped together."""

    def __init__(self, env: dict[str, str], port: int, workers: int, log: Path) -> None:
        self.port = port
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "manage.py", "start"),
                    *f"--host {HOST} --port {port} --web-workers {workers}".split(),
                ],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"manage.py start exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the server did not answer /healthz in time")

    def worker_pids(self) -> list[int]:
        """The web server processes: the children of ``start`` that run dashboard.webserver."""
        return [
            pid
            for pid in children(self.process.pid)
            if b"dashboard.webserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=25)
        with contextlib.suppress(ProcessLookupError):  # anything left of the group
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


# One backend, all phases ----------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    tally: Tally
    seconds: float
    rows: int
    cpu: dict[str, float]
    note: str

    @property
    def events_per_second(self) -> float:
        return self.tally.ok_events / self.seconds

    @property
    def requests_per_second(self) -> float:
        return self.tally.requests / self.seconds

    def cpu_ms(self, group: str) -> float:
        """CPU milliseconds ``group`` used per request, on average."""
        return 1000 * self.cpu[group] / self.requests_per_second

    def cpu_bound(self) -> float:
        """Requests/s if the server, databases and load generator had every core to themselves
        at the CPU cost per request measured here: an upper bound, as if nothing else waited."""
        ours = self.cpu["server"] + self.cpu["database"] + self.cpu["load generator"]
        return (os.cpu_count() or 1) * self.requests_per_second / ours

    def latency_ms(self, fraction: float) -> float:
        return percentile(self.tally.latencies, fraction) * 1000

    @property
    def verified(self) -> bool:
        tally = self.tally
        all_ok = tally.statuses.get("200", 0) == tally.requests
        return all_ok and self.rows == tally.events == tally.stored_reported


@dataclass
class Ceiling:
    method: str
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


@dataclass
class BackendRun:
    backend: Backend
    version: str
    phases: dict[str, PhaseResult]  # by messageId prefix
    ceilings: list[Ceiling]


def run_backend(backend: Backend, plan: Plan, profile_dir: Path | None) -> BackendRun:
    print(f"\n=== {backend.title}: fresh database", flush=True)
    # The embedded defaults for everything but what the backend sets: no stray configuration.
    hidden = {"DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL", "DJANGO_DEBUG"}
    env = {k: v for k, v in os.environ.items() if k not in hidden and "SWITCHBOARD" not in k}
    env |= {"SWITCHBOARD_DATA_DIR": str(backend.data_dir), "LOG_LEVEL": "WARNING"}
    env |= backend.server_env()
    server: Server | None = None
    try:
        backend.create()
        port = free_port()
        server = Server(env, port, plan.workers, backend.data_dir / "server.log")
        server.wait_ready()
        write_key = manage(env, "createsource", "Bench").split()[-1]
        p = backend.placeholder
        backend.query(
            f"UPDATE destinations_source SET rate_limit_per_second = {p} WHERE write_key = {p}",
            [RATE_LIMIT, write_key],
        )
        version = backend.version()
        print(f"manage.py start on {HOST}:{port}, {plan.workers} web server processes; {version}")
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        profiler = Profiler(profile_dir)
        phases: dict[str, PhaseResult] = {}

        def phase(prefix: str, name: str, note: str, load: Coroutine[Any, Any, Tally]) -> None:
            assert server is not None
            meter = functools.partial(CpuMeter, server.process.pid, backend.database_pids)
            wait_for_quiet(meter)
            if prefix != "s":
                profiler.start(f"{backend.kind}-{prefix}", server.worker_pids())
            cpu_meter = meter()
            started = time.perf_counter()
            tally = asyncio.run(load)
            seconds = time.perf_counter() - started
            cpu = cpu_meter.cores()
            rows = count_rows(backend, prefix)
            phases[prefix] = PhaseResult(name, tally, seconds, rows, cpu, note)
            report(phases[prefix])
            profiler.finish()

        seed = batch_requests("s", auth, seed=True)
        phase(
            "s",
            f"s. seed: /v1/batch, {BATCH_SIZE} events per request, one event per user",
            "16 connections",
            closed_loop(port, 16, 600, seed, limit=USERS // BATCH_SIZE),
        )
        single, batch = plan.single_connections, plan.batch_connections
        phase(
            "a",
            "a. /v1/track, 1 event per request, closed loop",
            f"{single} connections",
            closed_loop(port, single, plan.single_seconds, single_requests("a", auth)),
        )
        phase(
            "b",
            f"b. /v1/batch, {BATCH_SIZE} events per request, closed loop",
            f"{batch} connections",
            closed_loop(port, batch, plan.batch_seconds, batch_requests("b", auth)),
        )
        phase(
            "c",
            f"c. /v1/track offered at {plan.rate:g} requests/s, open loop",
            f"{plan.rate_seconds:g} s",
            open_loop(port, plan.rate, plan.rate_seconds, single_requests("c", auth)),
        )
        server.stop()
        server = None

        ceilings = []
        for prefix, method in zip("de", backend.ceiling_methods, strict=False):
            rows = copied_rows(backend, "b", prefix)
            wait_for_quiet(functools.partial(CpuMeter, os.getpid(), backend.database_pids))
            started = time.perf_counter()
            backend.insert(method, rows)
            ceiling = Ceiling(method, len(rows), time.perf_counter() - started)
            ceilings.append(ceiling)
            stored = count_rows(backend, prefix)
            print(
                f"d. ceiling, {method}, {BATCH_SIZE} rows per transaction, one connection: "
                f"{ceiling.rows:,} rows in {ceiling.seconds:.2f} s = "
                f"{ceiling.rows_per_second:,.0f} rows/s; table holds {stored:,}",
                flush=True,
            )
            if stored != len(rows):
                raise AssertionError(f"ceiling ({method}): {stored} rows stored of {len(rows)}")
        return BackendRun(backend, version, phases, ceilings)
    finally:
        if server is not None:
            server.stop()
        backend.drop()


def report(result: PhaseResult) -> None:
    tally = result.tally
    print(
        f"{result.name}: {tally.requests:,} requests, {tally.events:,} events in "
        f"{result.seconds:.1f} s = {result.events_per_second:,.0f} events/s, "
        f"{result.requests_per_second:,.0f} requests/s; latency p50 {result.latency_ms(0.5):.1f}"
        f" ms, p99 {result.latency_ms(0.99):.1f} ms, max {result.latency_ms(1):.1f} ms "
        f"({result.note})",
        flush=True,
    )
    print(
        f"   statuses {dict(tally.statuses)}; most connections {tally.most_connections}; "
        "cores busy: " + ", ".join(f"{k} {v:.2f}" for k, v in result.cpu.items()) + "; CPU "
        f"per request: server {result.cpu_ms('server'):.2f} ms, "
        f"database {result.cpu_ms('database'):.2f} ms; CPU bound {result.cpu_bound():,.0f} "
        "requests/s",
        flush=True,
    )
    print(
        f"   verify: sent {tally.events:,} events, answers say {tally.stored_reported:,} stored,"
        f" table holds {result.rows:,}: {'OK' if result.verified else 'MISMATCH'}",
        flush=True,
    )


# The report in docs/benchmarks.md -----------------------------------------------------------------

DOCS_INTRO = """\
Each section below is produced by a script in `bench/`, named at the top of the section, on
the machine the section describes. To rerun one, run its script from the repository root, e.g.
`uv run python bench/ingest.py --write-docs` for Ingest (it rewrites the measurements between
its markers and keeps the analysis after them); each script's docstring lists its options.
"""
BEGIN = "<!-- bench/ingest.py writes from here -->"
END = "<!-- bench/ingest.py writes up to here -->"


def machine_lines() -> list[str]:
    cpu = cpu_model()
    try:
        with psycopg.connect(PG_ADMIN_DSN) as connection:
            shown = ", ".join(
                f"{name}={connection.execute(f'SHOW {name}').fetchall()[0][0]}"
                for name in ("server_version", "synchronous_commit", "shared_buffers")
            )
    except psycopg.Error as exc:
        shown = f"unavailable ({exc})"
    dirty = command_output(
        "git", "-C", str(ROOT), "status", "--porcelain", "--", "destinations", "dashboard"
    )
    return [
        f"- Code: commit {command_output('git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD')}"
        + (" with uncommitted changes to the app" if dirty else ""),
        f"- `nproc`: {command_output('nproc')}; CPU: {cpu} (`/proc/cpuinfo` model name)",
        wrap(
            f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version} (Python's "
            f"sqlite3 module, in the server's processes), PostgreSQL: {shown}",
            "- ",
            "  ",
        ),
        "- `free -h`:",
        "",
        "```",
        command_output("free", "-h"),
        "```",
    ]


def wrap(text: str, first: str = "", rest: str = "") -> str:
    """``text`` as Markdown lines of at most 100 characters."""
    return textwrap.fill(
        text, 100, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False
    )


def markdown(runs: list[BackendRun], plan: Plan) -> str:
    method = [
        f"Server: `manage.py start --host 127.0.0.1 --port N --web-workers {plan.workers}` as in "
        f"production: migrations, then {plan.workers} waitress processes x 8 threads "
        "and the Celery delivery worker with its scheduler (idle: no destinations), "
        "`LOG_LEVEL=WARNING`, `DEBUG` off. SQLite: only `SWITCHBOARD_DATA_DIR` (a temporary "
        "directory), the embedded default. PostgreSQL: `DATABASE_URL` to a fresh database on "
        f"the local server, `CACHE_URL={plan.cache_url or 'unset (local memory)'}` for the "
        "rate-limit counters. The source's rate limit is raised so that nothing is refused.",
        "Load generator: `bench/ingest.py` itself, a separate process with an asyncio HTTP/1.1 "
        "keep-alive client. It shares the 2 cores with the server and the database; its CPU use "
        "is in the tables.",
        'Payload: an analytics-python-style `track` ("Order Completed", a userId drawn from '
        f"{USERS:,}, four properties including a products array; about 400 bytes stored per "
        f"event). Single: `POST /v1/track`; batch: `POST /v1/batch` with {BATCH_SIZE} events, "
        "envelope `context.library` and `sentAt`.",
        f"Phases, in turn on one database: s. seed, {USERS // BATCH_SIZE} batches giving every "
        "user a profile, so that later phases update known profiles; a. single events, closed "
        f"loop, {plan.single_connections} connections, {plan.single_seconds:g} s; b. batches, "
        f"closed loop, {plan.batch_connections} connections, {plan.batch_seconds:g} s; c. single "
        f"events offered at {plan.rate:g} requests/s for {plan.rate_seconds:g} s, open loop "
        "(latency counted from the scheduled send time); d. the ceiling: with the server "
        "stopped, phase b's stored rows inserted again under new messageIds by one connection, "
        f"{BATCH_SIZE} rows per transaction.",
        f"Latency is per HTTP request (a batch request carries {BATCH_SIZE} events). After each "
        "phase the rows are counted by messageId prefix; *verified* says they matched what was "
        "sent and what the answers reported. *Other* is CPU used by processes that are not the "
        "server, the databases or the load generator: before each phase the script waits (up "
        "to 30 s) for it to fall below 0.3 cores.",
    ]
    lines = [
        "### Method",
        "",
        *(wrap(item, "- ", "  ") for item in method),
        "",
        "### Machine",
        "",
        *machine_lines(),
    ]
    for backend_run in runs:
        lines += [
            "",
            f"### Results: {backend_run.version}"
            + (" (embedded default, WAL)" if backend_run.backend.kind == "sqlite" else ""),
            "",
            "| phase | requests | events | events/s | requests/s | p50 ms | p99 ms | max ms "
            "| CPU ms per request: server / database "
            "| cores busy: server / database / load generator / other | verified |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
        ]
        for result in backend_run.phases.values():
            tally, cpu = result.tally, result.cpu
            lines.append(
                f"| {result.name} ({result.note}) | {tally.requests:,} | {tally.events:,} "
                f"| {result.events_per_second:,.0f} | {result.requests_per_second:,.0f} "
                f"| {result.latency_ms(0.5):.1f} | {result.latency_ms(0.99):.1f} "
                f"| {result.latency_ms(1):.1f} "
                f"| {result.cpu_ms('server'):.1f} / {result.cpu_ms('database'):.1f} "
                f"| {cpu['server']:.2f} / {cpu['database']:.2f} / {cpu['load generator']:.2f} "
                f"/ {cpu['other']:.2f} | {'yes' if result.verified else 'NO'} |"
            )
        for ceiling in backend_run.ceilings:
            lines.append(
                f"| d. ceiling: {ceiling.method}, {BATCH_SIZE} rows per transaction "
                f"| | {ceiling.rows:,} | {ceiling.rows_per_second:,.0f} | | | | | | | yes |"
            )
    disturbed = [
        f"{r.backend.kind} {p.name[:2]} ({p.cpu['other']:.2f} cores)"
        for r in runs
        for p in r.phases.values()
        if p.cpu["other"] > DISTURBED_CORES
    ]
    if disturbed:
        lines += [
            "",
            wrap(
                f"Other processes used more than {DISTURBED_CORES} cores during "
                f"{', '.join(disturbed)}: those numbers are lower than this machine can do."
            ),
        ]
    lines += [
        "",
        "### Targets (set for PostgreSQL on 2 cores; SQLite for comparison)",
        "",
        wrap(
            "*CPU bound*: the rate that the CPU cost per request measured in the phase (server, "
            "databases and load generator) would allow if these processes had all "
            f"{os.cpu_count()} cores to themselves and never waited: an upper bound that does "
            "not depend on what else ran."
        ),
        "",
        "| target | " + " | ".join(r.backend.title for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    checks = [targets(r, plan) for r in runs]
    for i, (label, _, _) in enumerate(checks[0]):
        cells = [f"{c[i][1]} ({'met' if c[i][2] else 'MISSED'})" for c in checks]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def targets(backend_run: BackendRun, plan: Plan) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the three targets."""
    single, batch, rate = (backend_run.phases[p] for p in "abc")
    p99 = rate.latency_ms(0.99)
    return [
        (
            f">= {TARGET_BATCH_EVENTS:,} events/s in batches of {BATCH_SIZE}",
            f"{batch.events_per_second:,.0f} events/s; CPU bound "
            f"{batch.cpu_bound() * BATCH_SIZE:,.0f}",
            batch.events_per_second >= TARGET_BATCH_EVENTS,
        ),
        (
            f">= {TARGET_SINGLE_REQUESTS:,} single-event requests/s",
            f"{single.requests_per_second:,.0f} requests/s; CPU bound {single.cpu_bound():,.0f}",
            single.requests_per_second >= TARGET_SINGLE_REQUESTS,
        ),
        (
            f"p99 < {TARGET_P99_MS} ms at {plan.rate:g} requests/s offered",
            f"{p99:.1f} ms",
            p99 < TARGET_P99_MS,
        ),
    ]


def write_docs(section: str) -> None:
    """Replace this script's part of docs/benchmarks.md, leaving other sections alone."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if DOCS_INTRO not in text:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{DOCS_INTRO}{rest}"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = f"{before}{BEGIN}\n{section}{END}{after}"
    else:
        produced = wrap(
            "Produced by `bench/ingest.py --write-docs`: it rewrites what is between its "
            "markers; the analysis after them is kept."
        )
        text = f"{text.rstrip()}\n\n## Ingest\n\n{produced}\n\n{BEGIN}\n{section}{END}\n"
    DOCS.write_text(text)
    print(f"\nwrote {DOCS.relative_to(ROOT)}")


# Entry point ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="5-second phases: a smoke test")
    parser.add_argument(
        "--workers", type=int, default=2, help="web server processes (start's default)"
    )
    parser.add_argument("--connections", type=int, default=16, help="phase a's connections")
    parser.add_argument("--batch-connections", type=int, default=4, help="phase b's connections")
    parser.add_argument("--rate", type=float, default=200.0, help="phase c's requests/s")
    parser.add_argument(
        "--cache-url", default=REDIS_URL, help="PostgreSQL run's CACHE_URL; '' for none"
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the workers into DIR")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite the section in {DOCS.name}"
    )
    args = parser.parse_args(argv)
    if args.profile and not shutil.which("py-spy"):
        parser.error("--profile needs py-spy: uv run --with py-spy python bench/ingest.py ...")
    if args.write_docs and (args.quick or args.db != "both" or args.profile):
        parser.error("--write-docs needs a full run: both databases, no --quick, no --profile")

    seconds = 5 if args.quick else 20
    plan = Plan(
        single_seconds=seconds,
        batch_seconds=seconds,
        rate_seconds=seconds if args.quick else 30,
        single_connections=args.connections,
        batch_connections=args.batch_connections,
        rate=args.rate,
        workers=args.workers,
        cache_url=args.cache_url,
    )
    runs = []
    for kind in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        with tempfile.TemporaryDirectory(prefix=f"switchboard-bench-{kind}-") as data_dir:
            backend: Backend = (
                SqliteBackend(Path(data_dir))
                if kind == "sqlite"
                else PostgresBackend(Path(data_dir), args.cache_url)
            )
            runs.append(run_backend(backend, plan, args.profile))
    section = markdown(runs, plan)
    print("\n" + section)
    if args.write_docs:
        write_docs(section)
    mismatched = [
        f"{r.backend.kind}: {p.name}" for r in runs for p in r.phases.values() if not p.verified
    ]
    if mismatched:
        print(f"COUNT MISMATCH in {mismatched}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

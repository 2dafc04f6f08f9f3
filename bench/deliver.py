"""Delivery benchmark: how fast stored events reach a Refiner destination, and how soon.

Run from the repository root::

    uv run python bench/deliver.py                  # PostgreSQL, then SQLite: about 9 minutes
    uv run python bench/deliver.py --write-docs     # the same, then rewrite its section of
                                                    # docs/benchmarks.md
    uv run python bench/deliver.py --db postgres    # one backend
    uv run python bench/deliver.py --quick          # small numbers, one config: a smoke test
    uv run python bench/deliver.py --configs threads:1x4x16,prefork:1x2x16
    uv run --with py-spy python bench/deliver.py --db postgres --profile /tmp/deliver-profile

Everything runs on loopback. A fake Refiner (a minimal asyncio HTTP/1.1 keep-alive server
answering ``{"message":"ok"}``) runs in its own process for the whole run. For each backend the
script makes a fresh database (PostgreSQL: a ``switchboard_bench_deliver`` database, Redis db 5
as the Celery broker and db 6 as ``CACHE_URL``; SQLite: the embedded default, SQLite plus the
file-system broker in a temporary ``SWITCHBOARD_DATA_DIR``), migrates it, creates a source and a
Refiner destination pointing at the fake server (its rate limit lifted: the real Refiner allows
4,000 requests a minute per key) and runs:

1. throughput, per worker config: N events are stored through the app's own ingest path
   (``validate_message`` then ``store_messages``, which plans the deliveries and enqueues one
   ``destinations.deliver`` task per 100 of them on commit) with no worker running; then the
   worker processes are started (``celery -A dashboard worker``, the first with ``--beat`` so
   the sweeper runs as in production) and the database is polled until every delivery is
   finished. Deliveries/s counts from the first ``finished_at`` to the last;
2. the ceiling, once per concurrency shape: the same number of processes, each with the same
   number of threads, each thread a ``requests.Session`` POSTing Refiner-like bodies to the fake
   server in a loop. Our throughput is reported as a share of it;
3. latency under load: the web server started as production does (``manage.py start
   --no-worker``: the waitress processes of ``dashboard/webserver.py``, the scale-out form)
   plus the workers of ``--latency-config`` (``threads:2x2x16``: the threads pool ``start``
   runs, in two processes; ``best``: the best throughput config's); single-event
   ``POST /v1/track`` and ``/v1/identify`` offered open-loop at a fixed rate; then the
   percentiles of ``Delivery.finished_at - Delivery.received_at``.

Every phase is verified: all deliveries ``delivered``, and the fake server received exactly one
request per delivery. A worker config is ``POOL:PROCESSESxCONCURRENCYxDELIVERY_CONCURRENCY``:
``threads:1x4x16`` is one ``--pool threads --concurrency 4`` worker process with
``DELIVERY_CONCURRENCY=16``; ``prefork:1x2x16`` is one prefork worker with two child processes.

``--profile DIR`` samples the worker processes of every throughput run and of the latency phase
with py-spy (``--gil``: the thread holding the GIL, i.e. where CPU time goes) and prints the
heaviest functions; sampling slows the workers, so profiled numbers are not the benchmark's.
``--keep DIR`` keeps each backend's data directory and the worker and server logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests
from measure import (
    Profiler,
    command_output,
    cpu_model,
    descendants,
    machine_busy_seconds,
    percentile,
    pg_admin,
    pg_query,
    pg_recreate,
    pg_version,
    pids_named,
    process_cpu_seconds,
)
from requests.adapters import HTTPAdapter

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
SELF = (sys.executable, str(Path(__file__).resolve()))
HOST = "127.0.0.1"
MANAGE_START = (sys.executable, "manage.py", "start", "--host", HOST, "--no-worker")
PG_BENCH_DB = "switchboard_bench_deliver"
BROKER_URL = "redis://127.0.0.1:6379/5"
CACHE_URL = "redis://127.0.0.1:6379/6"
API_KEY = "rk_bench"
SOURCE_NAME = "Bench"
DESTINATION_NAME = "Refiner (bench)"
LIFTED_LIMIT = 1_000_000_000  # per minute / per second: no rate limit may hold anything back
USERS = 10_000  # userIds are drawn from this pool
SEED_CHUNK = 500  # events per store_messages call (the app's insert chunk)

TARGET_RATE = 1_000.0  # deliveries/s on this 2-core machine
TARGET_SHARE = 0.5  # of the ceiling at equal concurrency
TARGET_P95_SECONDS = 1.0  # received -> delivered at the offered rate
DRAIN_SECONDS = 30  # after the latency phase's load, how long deliveries may take to finish

# Pools and concurrency that production would pick from on 2 cores.
DEFAULT_CONFIGS = "threads:1x4x16,threads:2x2x16,prefork:1x2x16"
QUICK_CONFIGS = "threads:1x4x16"
# The latency phase runs the threads pool that `manage.py start` runs, in two processes: on
# PostgreSQL + Redis the prefork pool (sometimes the best for throughput) let deliveries fall
# seconds behind at 200 events/s with its workers mostly idle, which is still to be explained.
LATENCY_CONFIG = "threads:2x2x16"


# Worker configs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    """``processes`` Celery worker commands with ``--pool pool --concurrency concurrency``,
    each task sending with ``DELIVERY_CONCURRENCY=delivery_concurrency`` threads."""

    pool: str
    processes: int
    concurrency: int
    delivery_concurrency: int

    @classmethod
    def parse(cls, text: str) -> WorkerConfig:
        match = re.fullmatch(r"(threads|prefork):(\d+)x(\d+)x(\d+)", text.strip())
        if not match:
            raise argparse.ArgumentTypeError(
                f"{text!r}: a config is POOL:PROCESSESxCONCURRENCYxDELIVERY_CONCURRENCY, "
                "e.g. threads:1x4x16"
            )
        pool, *numbers = match.groups()
        return cls(pool, *(int(n) for n in numbers))

    @property
    def spec(self) -> str:
        return f"{self.pool}:{self.processes}x{self.concurrency}x{self.delivery_concurrency}"

    @property
    def shape(self) -> tuple[int, int]:
        """(processes that send, sending threads in each) when every task sends at once."""
        if self.pool == "threads":
            return self.processes, self.concurrency * self.delivery_concurrency
        return self.processes * self.concurrency, self.delivery_concurrency

    @property
    def description(self) -> str:
        unit = "threads" if self.pool == "threads" else "child processes"
        processes = "1 process" if self.processes == 1 else f"{self.processes} processes"
        return (
            f"`--pool {self.pool}`, {processes} x {self.concurrency} {unit}, "
            f"`DELIVERY_CONCURRENCY={self.delivery_concurrency}`"
        )


def shape_text(shape: tuple[int, int]) -> str:
    processes, threads = shape
    return f"{processes} x {threads} threads"


# Role: the fake Refiner -------------------------------------------------------------------------


class FakeRefiner(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: every POST is counted and answered ``{"message":"ok"}``;
    ``GET /stats`` answers the counts. Requests without the bench's key get Refiner's 401."""

    counts: Counter[str] = Counter()
    OK = b'{"message":"ok"}'
    UNAUTHORIZED = b'{"error":"No API key found in headers"}'
    AUTH = f"authorization: bearer {API_KEY}".encode()

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            method, path = head.split(b" ", 2)[:2]
            self.answer(method, path.decode(), head)

    def answer(self, method: bytes, path: str, head: bytes) -> None:
        assert self.transport is not None
        if method == b"get" and path == "/stats":
            status, body = b"200 OK", orjson.dumps(dict(self.counts))
        elif self.AUTH not in head:
            self.counts["unauthorized"] += 1
            status, body = b"401 Unauthorized", self.UNAUTHORIZED
        else:
            self.counts[path] += 1
            self.counts["requests"] += 1
            status, body = b"200 OK", self.OK
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


def serve_role(argv: Sequence[str]) -> int:
    """``deliver.py serve``: run the fake Refiner on a free port, print the port, serve."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(FakeRefiner, HOST, 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        async with server:
            await stop

    asyncio.run(serve())
    return 0


def fake_refiner_counts(port: int) -> Counter[str]:
    response = requests.get(f"http://{HOST}:{port}/stats", timeout=5)
    return Counter(response.json())


# Role: the ceiling, a plain requests.Session loop ----------------------------------------------


def refiner_session() -> requests.Session:
    """Set up like destinations.delivery.http.session()."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "Switchboard"
    return session


def ceiling_role(argv: Sequence[str]) -> int:
    """``deliver.py ceiling PORT THREADS START_AT SECONDS``: from START_AT (epoch seconds),
    THREADS threads each POST in a loop on their own session for SECONDS; prints
    ``{"requests": n, "errors": n}``."""
    port, threads = int(argv[0]), int(argv[1])
    start_at, seconds = float(argv[2]), float(argv[3])
    url = f"http://{HOST}:{port}/v1/track-event"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    counts = [0] * threads
    errors = [0] * threads

    def loop(index: int) -> None:
        session = refiner_session()
        time.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + seconds
        number = 0
        while time.time() < deadline:
            body = {"id": f"user-{index}-{number}", "event": "Order Completed"}
            response = session.request(
                "POST", url, json=body, headers=headers, timeout=(5.0, 10), allow_redirects=False
            )
            number += 1
            if response.status_code != 200:
                errors[index] += 1
        counts[index] = number

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({"requests": sum(counts), "errors": sum(errors)}), flush=True)
    return 0


# Roles that run inside Django, with the backend's environment ----------------------------------


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()


def setup_role(argv: Sequence[str]) -> int:
    """``deliver.py setup PORT``: the source and the Refiner destination; prints their ids."""
    django_setup()
    from destinations.delivery.services import destination_create
    from destinations.models import Destination
    from destinations.sources import source_create

    source = source_create(name=SOURCE_NAME, rate_limit_per_second=LIFTED_LIMIT)
    destination = destination_create(
        kind="refiner",
        name=DESTINATION_NAME,
        settings_values={"base_url": f"http://{HOST}:{argv[0]}/v1"},
        secret_values={"api_key": API_KEY},
    )
    Destination.objects.filter(pk=destination.pk).update(rate_limit_per_minute=LIFTED_LIMIT)
    print(json.dumps({"write_key": source.write_key, "destination_id": destination.pk}))
    return 0


def event_document(message_id: str, number: int) -> dict[str, Any]:
    """Three track calls for each identify, from USERS users, as a server-side SDK sends them."""
    user = f"user-{number * 7919 % USERS}"
    timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    common: dict[str, Any] = {"messageId": message_id, "userId": user, "timestamp": timestamp}
    common["context"] = {"library": {"name": "analytics-python", "version": "2.3.3"}}
    if number % 4 == 0:
        traits = {"email": f"{user}@example.com", "name": f"User {user}", "plan": "pro"}
        return {**common, "type": "identify", "traits": traits}
    properties = {"order_id": message_id, "revenue": 42.5, "currency": "USD"}
    return {**common, "type": "track", "event": "Order Completed", "properties": properties}


def seed_role(argv: Sequence[str]) -> int:
    """``deliver.py seed PREFIX N``: store N events through the app's ingest path; deliveries
    are planned in the same transaction and their tasks enqueued on commit."""
    django_setup()
    from destinations.ingest.message import validate_message
    from django.utils import timezone

    from destinations.ingest.store import store_messages
    from destinations.models import Source

    prefix, total = argv[0], int(argv[1])
    source_id = Source.objects.get(name=SOURCE_NAME).pk
    stored = 0
    for start in range(0, total, SEED_CHUNK):
        received_at = timezone.now()
        messages = [
            validate_message(
                event_document(f"{prefix}-{n}", n), call_type=None, received_at=received_at
            )
            for n in range(start, min(total, start + SEED_CHUNK))
        ]
        result = store_messages(source_id=source_id, messages=messages, received_at=received_at)
        stored += result.stored
    print(json.dumps({"stored": stored}))
    return 0 if stored == total else 1


# Backends -------------------------------------------------------------------------------------


class Backend:
    kind = ""
    title = ""
    placeholder = "%s"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def env(self) -> dict[str, str]:
        # The stand-in services listen on loopback, which the address guard refuses otherwise.
        return {
            "SWITCHBOARD_DATA_DIR": str(self.data_dir),
            "SWITCHBOARD_ALLOW_PRIVATE_URLS": "true",
        }

    def create(self) -> None: ...

    def drop(self) -> None: ...

    def purge_broker(self) -> None: ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def version(self) -> str:
        raise NotImplementedError

    def broker_title(self) -> str:
        raise NotImplementedError


class PostgresBackend(Backend):
    kind = "postgres"
    title = "PostgreSQL + Redis broker"
    dsn = f"postgresql://postgres@127.0.0.1:5432/{PG_BENCH_DB}"

    def env(self) -> dict[str, str]:
        return super().env() | {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{PG_BENCH_DB}",
            "CELERY_BROKER_URL": BROKER_URL,
            "CACHE_URL": CACHE_URL,
        }

    def create(self) -> None:
        self.drop()
        pg_recreate(PG_BENCH_DB)

    def drop(self) -> None:
        pg_admin(f"DROP DATABASE IF EXISTS {PG_BENCH_DB} WITH (FORCE)")
        self.purge_broker()

    def purge_broker(self) -> None:
        """Delete this bench's queue (and its priority lists) only: the Redis database may be
        shared. The rate-limit counters in the cache expire by themselves."""
        import redis

        client = redis.Redis.from_url(BROKER_URL)
        for key in client.scan_iter(match=f"{queue_name(self.kind)}*"):
            client.delete(key)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return pg_query(self.dsn, sql, params)

    def version(self) -> str:
        return pg_version(self.dsn)

    def service_pids(self) -> list[int]:
        """The server processes serving the bench database, and Redis."""
        rows = self.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        return [int(pid) for (pid,) in rows] + redis_pids()

    def broker_title(self) -> str:
        return f"Redis broker `{BROKER_URL}`, `CACHE_URL={CACHE_URL}`"


class SqliteBackend(Backend):
    kind = "sqlite"
    title = "SQLite + file-system broker (embedded default)"
    placeholder = "?"

    def purge_broker(self) -> None:
        for message in (self.data_dir / "broker").glob("*.msg"):
            message.unlink(missing_ok=True)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        path = self.data_dir / "switchboard.sqlite3"
        with contextlib.closing(sqlite3.connect(path, timeout=20)) as connection:
            return connection.execute(sql, params).fetchall()

    def version(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}"

    def broker_title(self) -> str:
        return "file-system broker in the data directory, per-process cache"


def queue_name(kind: str) -> str:
    return f"bench-deliver-{kind}"


def moment(value: Any) -> datetime:
    """A timestamp column as an aware datetime (SQLite hands back Django's text form)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def bench_role(role: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run one of this script's roles in a child process; its last line of output is JSON."""
    done = subprocess.run(
        [*SELF, role, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"deliver.py {role} failed:\n{done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


class Group:
    """A child process in its own session, stopped with its descendants."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                argv,
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


def start_workers(
    config: WorkerConfig, env: dict[str, str], directory: Path, label: str
) -> list[Group]:
    """The config's worker processes; the first also runs beat (the sweeper)."""
    worker_env = env | {"DELIVERY_CONCURRENCY": str(config.delivery_concurrency)}
    groups: list[Group] = []
    try:
        for index in range(config.processes):
            argv = [sys.executable, "-m", "celery", "-A", "dashboard", "worker"]
            if index == 0:
                argv += ["--beat", "--schedule", str(directory / f"beat-{label}")]
            argv += ["--pool", config.pool, "--concurrency", str(config.concurrency)]
            argv += ["--hostname", f"bench{index}@%h", "--loglevel", "INFO"]
            argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
            log = directory / f"worker-{label}-{index}.log"
            groups.append(Group(argv, worker_env, log))
        for index, group in enumerate(groups):
            group.wait_for(lambda g=group: " ready." in g.text(), f"worker {index}")  # type: ignore[misc]
    except BaseException:
        for group in groups:
            group.stop()
        raise
    return groups


TASK_LINE = re.compile(
    r"Task destinations\.deliver\[[^\]]+\] succeeded in ([\d.]+)s: \{'claimed': (\d+)"
)


@dataclass
class TaskStats:
    tasks: int = 0
    empty: int = 0  # woke up, claimed nothing: a duplicate wake-up (sweeper or redelivery)
    seconds: list[float] = field(default_factory=list)

    @classmethod
    def from_logs(cls, groups: Sequence[Group]) -> TaskStats:
        stats = cls()
        for group in groups:
            for match in TASK_LINE.finditer(group.text()):
                stats.tasks += 1
                stats.empty += match.group(2) == "0"
                stats.seconds.append(float(match.group(1)))
        return stats

    @property
    def median_ms(self) -> float:
        return percentile(self.seconds, 0.5) * 1000


# CPU accounting from /proc --------------------------------------------------------------------


def redis_pids() -> list[int]:
    return pids_named("redis-server")


class CpuMeter:
    """Average cores busy over a phase: the whole machine, each group of processes, this
    process (the bench: polling, load generation) and "other": what none of them used, i.e.
    anything else running on the machine at the time.

    A process counts from its first sample (0 if it started during the phase) to the last;
    one that exits during the phase takes its CPU time with it, so groups are sampled before
    anything in them is stopped."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups | {"bench": lambda: [os.getpid()]}
        self.started = time.monotonic()
        self.wall = 0.0
        self.machine = machine_busy_seconds()
        self.first = {name: self.sample(pids) for name, pids in self.groups.items()}

    @staticmethod
    def sample(pids: Callable[[], list[int]]) -> dict[int, float]:
        return {pid: process_cpu_seconds(pid) for pid in set(pids())}

    def cores(self) -> dict[str, float]:
        self.wall = wall = time.monotonic() - self.started
        cores = {"machine": round((machine_busy_seconds() - self.machine) / wall, 2)}
        for name, pids in self.groups.items():
            first = self.first[name]
            used = sum(v - first.get(pid, 0.0) for pid, v in self.sample(pids).items())
            cores[name] = round(used / wall, 2)
        accounted = sum(v for k, v in cores.items() if k != "machine")
        cores["other"] = round(max(0.0, cores["machine"] - accounted), 2)
        return cores


def wait_until_quiet(most_cores: float = 0.3, timeout: float = 5) -> float:
    """Other jobs on the machine skew every number: wait (bounded) until it is nearly idle.
    Returns the cores busy in the last second looked at."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        before = machine_busy_seconds()
        time.sleep(1)
        busy = machine_busy_seconds() - before
        if busy <= most_cores or time.monotonic() > deadline:
            if busy > most_cores:
                print(f"   WARNING: the machine is still {busy:.2f} cores busy; going ahead")
            return busy
        if not warned:
            print(f"   waiting for the machine to quieten ({busy:.2f} cores busy)...", flush=True)
            warned = True


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())


# Phase 1: throughput ----------------------------------------------------------------------------


@dataclass
class Throughput:
    config: WorkerConfig
    events: int
    delivered: int
    sent: int  # requests the fake server received
    seed_seconds: float
    startup_seconds: float  # worker start until ready
    span_seconds: float  # first finished_at to last
    total_seconds: float  # worker start to the last finished_at
    rate: float  # deliveries/s after the first batch, over span_seconds
    cpu: dict[str, float]
    cpu_ms: dict[str, float]  # CPU time per delivery, by group of processes
    tasks: TaskStats
    complete: bool

    @property
    def verified(self) -> bool:
        return self.complete and self.delivered == self.events == self.sent


class Bench:
    """One backend's phases, sharing the fake server and the ceiling results."""

    def __init__(
        self, backend: Backend, fake_port: int, fake_pid: int, work_dir: Path, plan: Plan
    ) -> None:
        self.backend = backend
        self.fake_port = fake_port
        self.fake_pid = fake_pid
        self.work_dir = work_dir
        self.plan = plan
        hidden = ("DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL", "DJANGO_DEBUG", "SWITCHBOARD_")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(hidden) and not k.startswith("DELIVERY_")
        }
        # Its own queue name too, as installations sharing a broker do.
        queue = {"SWITCHBOARD_QUEUE": queue_name(backend.kind)}
        self.env = env | backend.env() | queue | {"PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
        self.destination_id = 0
        self.write_key = ""
        self.runs = 0

    def prepare(self) -> None:
        self.backend.create()
        manage(self.env, "migrate", "--verbosity", "0")
        made = bench_role("setup", self.env, str(self.fake_port))
        self.destination_id, self.write_key = made["destination_id"], made["write_key"]

    def last_delivery_id(self) -> int:
        rows = self.backend.query("SELECT COALESCE(MAX(id), 0) FROM destinations_delivery")
        return int(rows[0][0])

    def unfinished(self, after_id: int) -> int:
        p = self.backend.placeholder
        rows = self.backend.query(
            "SELECT COUNT(*) FROM destinations_delivery WHERE id > "
            f"{p} AND status IN ('pending', 'sending', 'retrying')",
            [after_id],
        )
        return int(rows[0][0])

    def finished(self, after_id: int) -> list[tuple[str, datetime, datetime]]:
        p = self.backend.placeholder
        rows = self.backend.query(
            "SELECT status, received_at, finished_at FROM destinations_delivery "
            f"WHERE id > {p} AND finished_at IS NOT NULL",
            [after_id],
        )
        return [(status, moment(r), moment(f)) for status, r, f in rows]

    def wait_finished(self, after_id: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.unfinished(after_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True

    def meter(self, **more: Callable[[], list[int]]) -> CpuMeter:
        groups = {**more, "fake Refiner": lambda: [self.fake_pid]}
        if isinstance(self.backend, PostgresBackend):
            groups["database + broker"] = self.backend.service_pids
        return CpuMeter(groups)

    def throughput(self, config: WorkerConfig, profiler: Profiler) -> Throughput:
        self.runs += 1
        label = f"{self.backend.kind}-{self.runs}"
        events = self.plan.events
        self.backend.purge_broker()
        before_id = self.last_delivery_id()
        sent_before = fake_refiner_counts(self.fake_port)["requests"]
        started = time.perf_counter()
        bench_role("seed", self.env, f"t{self.runs}", str(events))
        seed_seconds = time.perf_counter() - started
        wait_until_quiet()
        workers_started = datetime.now(UTC)
        started = time.perf_counter()
        groups = start_workers(config, self.env, self.work_dir, label)
        startup = time.perf_counter() - started
        try:
            profiler.start(label, [g.process.pid for g in groups])
            meter = self.meter(workers=lambda: [p for g in groups for p in g.pids()])
            complete = self.wait_finished(before_id, self.plan.throughput_timeout)
            cpu = meter.cores()
            cpu_ms = {k: v * meter.wall * 1000 / events for k, v in cpu.items()}
            profiler.finish()
        finally:
            for group in groups:
                group.stop()
        rows = self.finished(before_id)
        delivered = sum(1 for status, _, _ in rows if status == "delivered")
        ends = sorted(f for _, _, f in rows)
        first, last = (ends[0], ends[-1]) if ends else (workers_started, workers_started)
        span = (last - first).total_seconds()
        after_first = sum(1 for f in ends if f > first)
        result = Throughput(
            config=config,
            events=events,
            delivered=delivered,
            sent=fake_refiner_counts(self.fake_port)["requests"] - sent_before,
            seed_seconds=seed_seconds,
            startup_seconds=startup,
            span_seconds=span,
            total_seconds=(last - workers_started).total_seconds(),
            rate=after_first / span if span > 0 else 0.0,
            cpu=cpu,
            cpu_ms=cpu_ms,
            tasks=TaskStats.from_logs(groups),
            complete=complete,
        )
        print(
            f"1. {self.backend.kind} {config.spec}: {result.delivered:,}/{events:,} delivered, "
            f"{result.rate:,.0f} deliveries/s over {span:.1f} s (first to last; "
            f"{events / max(result.total_seconds, 1e-9):,.0f}/s from worker start, which took "
            f"{startup:.1f} s); seeding took {seed_seconds:.1f} s",
            flush=True,
        )
        print(
            f"   tasks {result.tasks.tasks} ({result.tasks.empty} claimed nothing), median "
            f"{result.tasks.median_ms:.0f} ms; fake Refiner got {result.sent:,}; cores busy: "
            f"{cpu_text(cpu)}; CPU per delivery: workers {cpu_ms['workers']:.2f} ms, database + "
            f"broker {cpu_ms.get('database + broker', 0.0):.2f} ms; "
            f"{'verified' if result.verified else 'NOT VERIFIED'}",
            flush=True,
        )
        return result

    # Phase 3: latency under load --------------------------------------------------------------

    def latency(self, config: WorkerConfig, profiler: Profiler) -> Latency:
        port = free_port()
        server = Group(
            [*MANAGE_START, "--port", str(port), "--web-workers", str(self.plan.web_workers)],
            self.env | {"LOG_LEVEL": "WARNING"},
            self.work_dir / f"server-{self.backend.kind}.log",
        )
        groups: list[Group] = []
        try:
            server.wait_for(lambda: healthy(port), "manage.py start")
            wait_until_quiet()
            self.backend.purge_broker()
            before_id = self.last_delivery_id()
            sent_before = fake_refiner_counts(self.fake_port)["requests"]
            groups = start_workers(config, self.env, self.work_dir, f"{self.backend.kind}-lat")
            profiler.start(f"{self.backend.kind}-lat", [g.process.pid for g in groups])
            meter = self.meter(
                workers=lambda: [p for g in groups for p in g.pids()], web=server.pids
            )
            rate, seconds = self.plan.rate, self.plan.latency_seconds
            tally = asyncio.run(open_loop(port, self.write_key, rate, seconds))
            complete = self.wait_finished(before_id, DRAIN_SECONDS)
            cpu = meter.cores()
            worker_seconds = cpu["workers"] * meter.wall
            profiler.finish()
        finally:
            for group in groups:
                group.stop()
            server.stop()
        rows = self.finished(before_id)
        # A delivery not finished DRAIN_SECONDS after the load stopped counts as infinitely late.
        seconds_each = [(f - r).total_seconds() for _, r, f in rows]
        seconds_each += [math.inf] * (tally.statuses.get(200, 0) - len(rows))
        result = Latency(
            rate=rate,
            seconds=seconds,
            config=config,
            requests=tally.requests,
            accepted=tally.statuses.get(200, 0),
            ingest_seconds=tally.latencies,
            delivered=sum(1 for status, _, _ in rows if status == "delivered"),
            sent=fake_refiner_counts(self.fake_port)["requests"] - sent_before,
            seconds_each=seconds_each,
            cpu=cpu,
            worker_ms_per_task=0.0,
            tasks=TaskStats.from_logs(groups),
            complete=complete,
        )
        result.worker_ms_per_task = 1000 * worker_seconds / max(result.tasks.tasks, 1)
        print(
            f"3. {self.backend.kind} {config.spec}: /v1/track at {rate:g}/s for {seconds:g} s: "
            f"{result.accepted:,}/{result.requests:,} accepted {dict(tally.statuses)} (ingest p50 "
            f"{result.ingest_ms(0.5):.1f} ms, p99 {result.ingest_ms(0.99):.1f} ms); "
            f"{result.delivered:,} delivered; received -> delivered p50 "
            f"{result.shown(0.5)}, p95 {result.shown(0.95)}, p99 {result.shown(0.99)}, max "
            f"{result.shown(1)} (unfinished: not delivered {DRAIN_SECONDS} s after the load)",
            flush=True,
        )
        print(
            f"   tasks {result.tasks.tasks} ({result.tasks.empty} claimed nothing), workers' CPU "
            f"{result.worker_ms_per_task:.1f} ms per task; cores busy: "
            f"{cpu_text(cpu)}; {'verified' if result.verified else 'NOT VERIFIED'}",
            flush=True,
        )
        return result


def healthy(port: int) -> bool:
    try:
        return requests.get(f"http://{HOST}:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


# Phase 2: the ceiling ---------------------------------------------------------------------------


@dataclass
class Ceiling:
    shape: tuple[int, int]
    requests: int
    errors: int
    seconds: float
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def measure_ceiling(
    shape: tuple[int, int], fake_port: int, fake_pid: int, seconds: float
) -> Ceiling:
    processes, threads = shape
    wait_until_quiet()
    start_at = time.time() + 1.5  # every process has imported requests and started its threads
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    children_ = [
        subprocess.Popen(
            [*SELF, "ceiling", str(fake_port), str(threads), repr(start_at), str(seconds)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    time.sleep(max(0.0, start_at - time.time()))
    meter = CpuMeter(
        {
            "clients": lambda: [c.pid for c in children_],
            "fake Refiner": lambda: [fake_pid],
        }
    )
    time.sleep(seconds)
    cpu = meter.cores()
    outputs = [json.loads(c.communicate(timeout=60)[0].strip().splitlines()[-1]) for c in children_]
    ceiling = Ceiling(
        shape=shape,
        requests=sum(o["requests"] for o in outputs),
        errors=sum(o["errors"] for o in outputs),
        seconds=seconds,
        cpu=cpu,
    )
    print(
        f"2. ceiling, requests.Session loop, {shape_text(shape)}: {ceiling.requests:,} requests "
        f"in {seconds:g} s = {ceiling.rate:,.0f}/s ({ceiling.errors} not 200); cores busy: "
        f"{cpu_text(cpu)}",
        flush=True,
    )
    return ceiling


# Phase 3's load: an open-loop client ------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter[int | str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


# A client must not send on a keep-alive connection the server may be closing: connections idle
# longer than this are dropped (the server closes them after SWITCHBOARD_CLIENT_TIMEOUT_SECONDS;
# gunicorn, before ADR 0019, after 2 s).
IDLE_LIMIT = 1.0


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0


async def post(idle: list[Connection], port: int, data: bytes) -> int:
    """One request on a recently used keep-alive connection, or a new one; returns the status."""
    connection = None
    while idle and connection is None:
        connection = idle.pop()
        if time.monotonic() - connection.idle_since > IDLE_LIMIT or connection.reader.at_eof():
            connection.writer.close()
            connection = None
    if connection is None:
        connection = Connection(*await asyncio.open_connection(HOST, port))
    connection.writer.write(data)
    head = await connection.reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await connection.reader.readexactly(length)
    if b"connection: close" in head.lower():
        connection.writer.close()
    else:
        connection.idle_since = time.monotonic()
        idle.append(connection)
    return int(head[9:12])


async def open_loop(port: int, write_key: str, rate: float, seconds: float) -> Tally:
    """Send request i at start + i / rate whatever happened to the earlier ones."""
    import base64

    authorization = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    tally = Tally()
    idle: list[Connection] = []

    async def send(number: int, scheduled: float) -> None:
        document = event_document(f"lat-{number}", number)
        body = orjson.dumps(document)
        data = (
            f"POST /v1/{document['type']} HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: {authorization}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        tally.requests += 1
        try:
            status = await post(idle, port, data)
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.statuses[type(exc).__name__] += 1
            return
        tally.statuses[status] += 1
        tally.latencies.append(time.perf_counter() - scheduled)

    tasks = []
    started = time.perf_counter() + 0.05
    for number in range(int(rate * seconds)):
        scheduled = started + number / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(send(number, scheduled)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.writer.close()
    return tally


@dataclass
class Latency:
    rate: float
    seconds: float
    config: WorkerConfig
    requests: int
    accepted: int
    ingest_seconds: list[float]
    delivered: int
    sent: int
    seconds_each: list[float]  # received -> delivered, per delivery
    cpu: dict[str, float]
    worker_ms_per_task: float
    tasks: TaskStats
    complete: bool

    def p(self, fraction: float) -> float:
        return percentile(self.seconds_each, fraction)

    def shown(self, fraction: float) -> str:
        value = self.p(fraction)
        return "unfinished" if math.isinf(value) else f"{value * 1000:,.0f} ms"

    def ingest_ms(self, fraction: float) -> float:
        return percentile(self.ingest_seconds, fraction) * 1000

    @property
    def verified(self) -> bool:
        return self.complete and self.requests == self.accepted == self.delivered == self.sent


# The whole run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    events: int
    configs: tuple[WorkerConfig, ...]
    ceiling_seconds: float
    rate: float
    latency_seconds: float
    web_workers: int
    throughput_timeout: float
    # None: the best throughput config's workers.
    latency_config: WorkerConfig | None = None


@dataclass
class BackendRun:
    backend: Backend
    version: str
    throughputs: list[Throughput]
    latency: Latency | None

    def best(self) -> Throughput:
        return max(self.throughputs, key=lambda t: (t.verified, t.rate))


@contextlib.contextmanager
def work_directory(keep: Path | None, kind: str) -> Iterator[Path]:
    """A temporary directory for one backend's data and logs, or ``keep/kind`` to keep."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=f"switchboard-deliver-{kind}-") as tmp:
            yield Path(tmp)
        return
    directory = keep.resolve() / kind
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    yield directory
    print(f"kept {directory}")


@contextlib.contextmanager
def fake_refiner() -> Iterator[tuple[int, int]]:
    process = subprocess.Popen(
        [*SELF, "serve"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_backend(
    backend: Backend,
    plan: Plan,
    fake: tuple[int, int],
    ceilings: dict[tuple[int, int], Ceiling],
    profiler: Profiler,
    work_dir: Path,
) -> BackendRun:
    print(f"\n=== {backend.title}", flush=True)
    bench = Bench(backend, *fake, work_dir, plan)
    try:
        bench.prepare()
        version = backend.version()
        throughputs = []
        for config in plan.configs:
            throughputs.append(bench.throughput(config, profiler))
            if config.shape not in ceilings:
                ceilings[config.shape] = measure_ceiling(config.shape, *fake, plan.ceiling_seconds)
            ceiling = ceilings[config.shape]
            print(f"   = {100 * throughputs[-1].rate / ceiling.rate:.0f}% of the ceiling")
        run = BackendRun(backend, version, throughputs, None)
        latency_config = plan.latency_config or run.best().config
        run.latency = bench.latency(latency_config, profiler) if plan.latency_seconds else None
        return run
    finally:
        backend.drop()


# The report in docs/benchmarks.md -----------------------------------------------------------------

DOCS_INTRO = """# Benchmarks

Each section below is produced by one script in `bench/`, named in its heading, on the machine
it describes. Run a script from the repository root with `--write-docs` to rewrite the numbers
between its markers; the prose after them is kept.
"""
HEADING = "## Delivery (`bench/deliver.py`)"
BEGIN = "<!-- bench/deliver.py writes from here -->"
END = "<!-- bench/deliver.py writes up to here -->"


def machine_lines(runs: Sequence[BackendRun]) -> list[str]:
    import celery
    import django
    import kombu
    import urllib3

    cpu = cpu_model()
    memory = command_output("free", "-h").splitlines()
    total = memory[1].split()[1] if len(memory) > 1 else "unknown"
    versions = ", ".join(run.version for run in runs)
    redis_version = command_output("redis-server", "--version").split(" v=")[-1].split()[0]
    return [
        f"- `nproc`: {command_output('nproc')}; CPU: {cpu}; memory: {total} (`free -h`)",
        f"- Python {platform.python_version()}, Django {django.__version__}, Celery "
        f"{celery.__version__}, kombu {kombu.__version__}, requests {requests.__version__}, "
        f"urllib3 {urllib3.__version__}; {versions}; Redis {redis_version}",
    ]


def markdown(
    runs: Sequence[BackendRun], ceilings: dict[tuple[int, int], Ceiling], plan: Plan
) -> str:
    latency_runs = [r for r in runs if r.latency is not None]
    lines = [
        "### Method",
        "",
        "- Destination: one Refiner destination whose base URL is a fake Refiner on loopback, a "
        'minimal asyncio HTTP/1.1 keep-alive server in its own process answering `{"message":'
        '"ok"}` at once; it counts requests, so every run checks one request per delivery. The '
        "destination's rate limit is lifted (the connector's default is Refiner's 4,000 "
        "requests/minute per key); every other delivery setting is the default.",
        f"- Throughput: {plan.events:,} events (3 `track` for each `identify`, from "
        f"{USERS:,} users) are stored through the app's ingest path (`validate_message`, "
        "`store_messages`: deliveries planned in the same transaction, one `destinations.deliver`"
        " task per 100 enqueued on commit) while no worker runs. Then the worker processes start "
        "(`python -m celery -A dashboard worker --pool P --concurrency C`, the first with "
        "`--beat` for the sweeper, `--loglevel INFO`) and the database is polled until every "
        "delivery is finished. Deliveries/s = deliveries finished after the first batch / "
        "(last `finished_at` - first `finished_at`). CPU per delivery = the workers' CPU time "
        "(user + system, from `/proc`) from ready to done / deliveries: unlike deliveries/s it "
        "hardly depends on what else the machine runs.",
        "- Ceiling: with no worker running, a plain `requests.Session` loop against the same "
        "server, one session per thread, with as many processes and threads as the config "
        "sends with at most (threads pool: C x `DELIVERY_CONCURRENCY` threads in each worker "
        "process; prefork: `DELIVERY_CONCURRENCY` threads in each child), for "
        f"{plan.ceiling_seconds:g} s.",
        f"- Latency: `manage.py start --no-worker --web-workers {plan.web_workers}` (migrations, "
        "then waitress processes x 8 threads; `--no-worker` is the scale-out form, "
        "without it `start` adds one `--pool threads --concurrency 4` worker) plus "
        + (
            f"the workers of `{plan.latency_config.spec}` (the pool `start` runs, in two processes)"
            if plan.latency_config
            else "the best config's workers"
        )
        + "; Segment calls, one event per request (`POST /v1/track` and "
        f"`/v1/identify`), offered open-loop at {plan.rate:g} events/s for "
        f"{plan.latency_seconds:g} s from an asyncio client in the bench process. Received -> "
        "delivered is `Delivery.finished_at - Delivery.received_at` (`received_at` is taken in "
        "the ingest view, so time queued in front of the web server is not in it; the ingest "
        "request's own latency, from its scheduled send time, is shown beside it). A delivery "
        f"not finished {DRAIN_SECONDS} s after the load stopped counts as infinitely late "
        "(*unfinished*).",
        "- Everything shares the 2 cores: workers, database, broker, web server, fake server "
        "and load generator. Cores busy are averages over the phase from `/proc`: database + "
        "broker is the PostgreSQL backends serving the bench database plus `redis-server`; "
        "*other* is whatever else ran on the machine meanwhile (before each phase the script "
        "waits, at most 5 s, for the machine to be nearly idle).",
        "",
        "### Machine",
        "",
        *machine_lines(runs),
    ]
    for run in runs:
        lines += [
            "",
            f"### Throughput: {run.backend.title}",
            "",
            f"{run.version}; {run.backend.broker_title()}.",
            "",
            "| worker config | deliveries/s | ceiling (processes x threads) | % of ceiling "
            "| first -> last | tasks (claimed nothing) | median task | CPU per delivery: workers"
            " / database + broker | cores: workers / database + broker / fake Refiner / other "
            "/ machine | verified |",
            "|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
        ]
        for result in run.throughputs:
            ceiling = ceilings[result.config.shape]
            cpu, ms = result.cpu, result.cpu_ms
            best = " **(best)**" if result is run.best() else ""
            lines.append(
                f"| {result.config.description}{best} | {result.rate:,.0f} "
                f"| {ceiling.rate:,.0f} ({shape_text(ceiling.shape)}) "
                f"| {100 * result.rate / ceiling.rate:.0f}% | {result.span_seconds:.1f} s "
                f"| {result.tasks.tasks} ({result.tasks.empty}) "
                f"| {result.tasks.median_ms:.0f} ms | {ms['workers']:.2f} / "
                f"{ms.get('database + broker', 0.0):.2f} ms | {cpu['workers']:.2f} / "
                f"{cpu.get('database + broker', 0.0):.2f} / {cpu['fake Refiner']:.2f} / "
                f"{cpu['other']:.2f} / {cpu['machine']:.2f} "
                f"| {'yes' if result.verified else 'NO'} |"
            )
    lines += [
        "",
        "### Ceiling: `requests.Session` loop against the same fake Refiner",
        "",
        "| processes x threads | requests/s | cores: clients / fake Refiner / other / machine |",
        "|---|--:|---|",
    ]
    for shape, ceiling in sorted(ceilings.items()):
        cpu = ceiling.cpu
        lines.append(
            f"| {shape_text(shape)} | {ceiling.rate:,.0f} | {cpu['clients']:.2f} / "
            f"{cpu['fake Refiner']:.2f} / {cpu['other']:.2f} / {cpu['machine']:.2f} |"
        )
    if latency_runs:
        lines += [
            "",
            f"### Latency at {plan.rate:g} events/s: received -> delivered",
            "",
            "| backend | worker config | events sent / accepted / delivered | p50 | p95 | p99 "
            "| max | ingest request p50 / p99 | tasks (claimed nothing) | workers' CPU per task "
            "| cores: web / workers / database + broker / other / machine | verified |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
        ]
        for run in latency_runs:
            measured = run.latency
            assert measured is not None
            cpu = measured.cpu
            lines.append(
                f"| {run.backend.title} | `{measured.config.spec}` | {measured.requests:,} / "
                f"{measured.accepted:,} / {measured.delivered:,} "
                f"| {measured.shown(0.5)} | {measured.shown(0.95)} | {measured.shown(0.99)} "
                f"| {measured.shown(1)} "
                f"| {measured.ingest_ms(0.5):,.1f} / {measured.ingest_ms(0.99):,.1f} ms "
                f"| {measured.tasks.tasks:,} ({measured.tasks.empty}) "
                f"| {measured.worker_ms_per_task:.1f} ms | {cpu['web']:.2f} / "
                f"{cpu['workers']:.2f} / {cpu.get('database + broker', 0.0):.2f} / "
                f"{cpu['other']:.2f} / {cpu['machine']:.2f} "
                f"| {'yes' if measured.verified else 'NO'} |"
            )
    lines += ["", "### Targets", ""]
    lines += [
        "| target | " + " | ".join(run.backend.title for run in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for name, check in target_checks(plan):
        lines.append(f"| {name} | " + " | ".join(check(run, ceilings) for run in runs) + " |")
    return "\n".join(lines) + "\n"


TargetCheck = Callable[[BackendRun, dict[tuple[int, int], Ceiling]], str]


def target_checks(plan: Plan) -> list[tuple[str, TargetCheck]]:
    def verdict(value: str, ok: bool) -> str:
        return f"{value} ({'met' if ok else '**missed**'})"

    def rate(run: BackendRun, ceilings: dict[tuple[int, int], Ceiling]) -> str:
        best = run.best()
        return verdict(f"{best.rate:,.0f}/s", best.rate >= TARGET_RATE)

    def share(run: BackendRun, ceilings: dict[tuple[int, int], Ceiling]) -> str:
        best = run.best()
        value = best.rate / ceilings[best.config.shape].rate
        return verdict(f"{100 * value:.0f}%", value >= TARGET_SHARE)

    def p95(run: BackendRun, ceilings: dict[tuple[int, int], Ceiling]) -> str:
        if run.latency is None:
            return "not run"
        value = run.latency.p(0.95)
        return verdict(run.latency.shown(0.95), value < TARGET_P95_SECONDS)

    return [
        (f">= {TARGET_RATE:,.0f} deliveries/s (best config)", rate),
        (f">= {100 * TARGET_SHARE:.0f}% of the ceiling at equal concurrency", share),
        (f"p95 received -> delivered < {TARGET_P95_SECONDS:g} s at {plan.rate:g} events/s", p95),
    ]


def write_docs(section: str) -> None:
    """Replace this script's part of the file, or append it at the end; nothing else changes.
    The file is read just before it is written: other scripts write their own sections."""
    text = DOCS.read_text() if DOCS.exists() else DOCS_INTRO
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1]
        text = f"{before}{BEGIN}\n{section}{END}{after}"
    else:
        text = f"{text.rstrip()}\n\n{HEADING}\n\n{BEGIN}\n{section}{END}\n"
    DOCS.write_text(text)
    print(f"\nwrote {DOCS.relative_to(ROOT)}")


# Entry point ----------------------------------------------------------------------------------

ROLES: dict[str, Callable[[Sequence[str]], int]] = {
    "serve": serve_role,
    "ceiling": ceiling_role,
    "setup": setup_role,
    "seed": seed_role,
}


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] in ROLES:
        return ROLES[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--db", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke test")
    parser.add_argument("--events", type=int, help="events per throughput run (15,000)")
    parser.add_argument(
        "--configs",
        type=lambda text: tuple(WorkerConfig.parse(c) for c in text.split(",")),
        help=f"worker configs to try (default {DEFAULT_CONFIGS})",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="latency phase's events/s")
    parser.add_argument("--latency-seconds", type=float, help="latency phase's length (30)")
    parser.add_argument(
        "--latency-config",
        default=LATENCY_CONFIG,
        help=f"the latency phase's workers ('best': the best throughput config; {LATENCY_CONFIG})",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="web server processes")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the workers into DIR")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep data directories and logs under DIR"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite its part of {DOCS.name}"
    )
    args = parser.parse_args(argv)
    if args.write_docs and (args.quick or args.db != "both" or args.profile):
        parser.error("--write-docs needs a full run: both databases, no --quick, no --profile")

    configs = args.configs or tuple(
        WorkerConfig.parse(c) for c in (QUICK_CONFIGS if args.quick else DEFAULT_CONFIGS).split(",")
    )
    plan = Plan(
        events=args.events or (2_000 if args.quick else 15_000),
        configs=configs,
        ceiling_seconds=2 if args.quick else 5,
        rate=args.rate,
        latency_seconds=(5 if args.quick else 30)
        if args.latency_seconds is None
        else args.latency_seconds,
        web_workers=args.web_workers,
        throughput_timeout=120 if args.quick else 180,
        latency_config=None
        if args.latency_config == "best"
        else WorkerConfig.parse(args.latency_config),
    )
    profiler = Profiler(args.profile)
    ceilings: dict[tuple[int, int], Ceiling] = {}
    runs = []
    started = time.monotonic()
    with fake_refiner() as fake:
        for kind in ("postgres", "sqlite") if args.db == "both" else (args.db,):
            with work_directory(args.keep, kind) as work_dir:
                data_dir = work_dir / "data"
                backend = (
                    PostgresBackend(data_dir) if kind == "postgres" else SqliteBackend(data_dir)
                )
                runs.append(run_backend(backend, plan, fake, ceilings, profiler, work_dir))
    section = markdown(runs, ceilings, plan)
    print("\n" + section)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.write_docs:
        write_docs(section)
    unverified = [
        f"{r.backend.kind} {t.config.spec}" for r in runs for t in r.throughputs if not t.verified
    ]
    unverified += [
        f"{r.backend.kind} latency" for r in runs if r.latency and not r.latency.verified
    ]
    if unverified:
        print(f"NOT VERIFIED: {unverified}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

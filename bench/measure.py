"""What the benchmark scripts share: CPU accounting from /proc, percentiles, the requests and
the open loop of a load generator, the machine's description, py-spy profiling, PostgreSQL
databases of their own, the app's settings and processes (the environment they get,
``manage.py``, ``start``) and their sections of docs/benchmarks.md. Imported by the scripts in
this folder and their packages (``python bench/x.py`` puts the folder on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "benchmarks.md"
HOST = "127.0.0.1"
NO_LIMIT = 1_000_000_000  # a rate limit (per second or per minute) that holds nothing back
LIBRARY = {"name": "analytics-python", "version": "2.3.3"}  # the SDK the payloads imitate


# CPU accounting from /proc -----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [d for child in found for d in descendants(child)]


def process_cpu_seconds(pid: int, reaped: bool = False) -> float:
    """User + system CPU time of one process so far; with ``reaped``, with that of its
    children that have exited and been waited for (a server's short-lived workers)."""
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])
        if reaped:
            ticks += int(fields[13]) + int(fields[14])
        return ticks / os.sysconf("SC_CLK_TCK")
    return 0.0


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
    return pids


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting on I/O)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


# Memory of a process, from /proc -----------------------------------------------------------------


def memory_mb(field: str = "VmRSS", pid: int | None = None) -> float:
    """A process's (this one's if ``pid`` is None) resident memory now (``VmRSS``) or at its
    peak (``VmHWM``), in MiB; NaN if it has gone."""
    try:
        status = Path(f"/proc/{pid or 'self'}/status").read_text()
    except OSError:
        return math.nan
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return math.nan


def reset_peak_memory() -> None:
    """Start ``VmHWM`` again from the current RSS (Linux 4.0+), so that it gives the peak of
    what follows, not of everything the process did before."""
    Path("/proc/self/clear_refs").write_text("5")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] if ordered else math.nan


class CpuMeter:
    """Average cores busy over a phase: the whole machine, each group of processes, this
    process (``own``: the bench itself, e.g. its load generator) and "other": what none of them
    used, i.e. anything else running on the machine at the time.

    A process counts from its first sample (0 if it started during the phase) to the last;
    one that exits during the phase takes its CPU time with it, so groups are sampled before
    anything in them is stopped. For the groups named in ``reaped`` (a server whose children
    come and go, such as PostgreSQL's backends), a process's exited children count too."""

    def __init__(
        self,
        groups: dict[str, Callable[[], list[int]]],
        own: str = "bench",
        reaped: Collection[str] = (),
    ) -> None:
        self.groups = groups | {own: lambda: [os.getpid()]}
        self.reaped = set(reaped)
        self.started = time.monotonic()
        self.wall = 0.0
        self.machine = machine_busy_seconds()
        self.first = {name: self.sample(pids, name) for name, pids in self.groups.items()}

    def sample(self, pids: Callable[[], list[int]], name: str) -> dict[int, float]:
        reaped = name in self.reaped
        return {pid: process_cpu_seconds(pid, reaped) for pid in set(pids())}

    def seconds(self) -> dict[str, float]:
        """CPU seconds used since the meter started: the machine's, each group's, "other"."""
        self.wall = time.monotonic() - self.started
        used = {"machine": machine_busy_seconds() - self.machine}
        for name, pids in self.groups.items():
            first = self.first[name]
            now = self.sample(pids, name)
            used[name] = sum(v - first.get(pid, 0.0) for pid, v in now.items())
        accounted = sum(v for k, v in used.items() if k != "machine")
        used["other"] = max(0.0, used["machine"] - accounted)
        return used

    def cores(self) -> dict[str, float]:
        used = self.seconds()
        return {k: round(v / self.wall, 2) for k, v in used.items()}


def cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in cpu.items())


def wait_for_quiet(
    ignore: Callable[[], list[int]] = list, most_cores: float = 0.3, timeout: float = 5
) -> float:
    """Other jobs on the machine skew every number: wait, at most ``timeout`` seconds, until the
    machine is nearly idle, not counting the ``ignore`` processes (an idle server that is part
    of the setup). Returns the cores busy in the last second looked at."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        meter = CpuMeter({"ignored": ignore})
        time.sleep(1)
        cores = meter.cores()
        busy = cores["machine"] - cores["ignored"]
        if busy <= most_cores or time.monotonic() > deadline:
            if busy > most_cores:
                print(f"   WARNING: the machine is still {busy:.2f} cores busy; going ahead")
            return busy
        if not warned:
            print(f"   waiting for the machine to quieten ({busy:.2f} cores busy)...", flush=True)
            warned = True


# Load --------------------------------------------------------------------------------------------


def iso(moment: datetime | None = None) -> str:
    """A Segment timestamp: UTC, milliseconds, ``Z`` (now when no moment is given)."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_post(path: str, document: dict[str, Any], authorization: str) -> bytes:
    """A whole HTTP/1.1 POST of ``document`` as JSON, ready to write to a keep-alive socket."""
    body = orjson.dumps(document)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def open_loop(
    rate: float,
    seconds: float,
    send: Callable[[int, float], Coroutine[Any, Any, None]],
    lead: float,
) -> None:
    """Start ``send(i, scheduled)`` at ``scheduled`` = start + i / rate, ``rate * seconds``
    times, whatever happened to the earlier ones (an open loop: a stalled server cannot slow
    the offered load); then wait for them all. The first starts ``lead`` seconds from now."""
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter() + lead
    for number in range(int(rate * seconds)):
        scheduled = started + number / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(send(number, scheduled)))
    await asyncio.gather(*tasks)


# The machine -------------------------------------------------------------------------------------


def command_output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def cpu_model() -> str:
    return next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )


# Profiling ---------------------------------------------------------------------------------------

# Sampling the thread that holds the GIL shows where CPU time goes; --subprocesses follows
# prefork's children.
PY_SPY_OPTIONS = ("--subprocesses", "--rate", "250", "--gil", "--nonblocking", "--format", "raw")


class Profiler:
    """py-spy on each of a phase's processes: raw collapsed stacks, GIL holder only."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.running: list[subprocess.Popen[bytes]] = []
        self.outputs: list[Path] = []

    def start(self, label: str, pids: list[int]) -> None:
        if self.directory is None:
            return
        py_spy = shutil.which("py-spy")
        if py_spy is None:
            raise RuntimeError("--profile needs py-spy: uv run --with py-spy python bench/...")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.outputs = [self.directory / f"{label}-{pid}.txt" for pid in pids]
        self.running = [
            subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), *PY_SPY_OPTIONS, "--output", str(output)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid, output in zip(pids, self.outputs, strict=True)
        ]
        time.sleep(1)  # let py-spy attach before the load starts

    def finish(self) -> None:
        if not self.running:
            return
        for child in self.running:
            child.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for child in self.running:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.running = []
        print_profile(self.outputs)


def print_profile(outputs: Sequence[Path], top: int = 15) -> None:
    """Where the GIL-holding samples were: the app's functions (inclusive) and the packages
    whose code was running (exclusive), heaviest first."""
    total = 0
    app: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for output in outputs:
        if not output.exists():
            continue
        for line in output.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            for frame in set(frames):
                if frame.split("(")[-1].startswith(("destinations/", "dashboard/")):
                    app[frame] += samples
            where = frames[-1].split("(")[-1]
            packages[where.split("/")[0] if "/" in where else "stdlib/other"] += samples
    print(f"   profile: {total:,} samples in {', '.join(str(o) for o in outputs)}")
    print("   app functions, inclusive:")
    for frame, samples in app.most_common(top):
        print(f"   {100 * samples / max(total, 1):5.1f}%  {frame}")
    print("   running code by package, exclusive:")
    for package, samples in packages.most_common(top):
        print(f"   {100 * samples / max(total, 1):5.1f}%  {package}")


# PostgreSQL --------------------------------------------------------------------------------------

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pg_admin(sql: str, admin_dsn: str = PG_ADMIN_DSN) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(sql)


def pg_drop(database: str, admin_dsn: str = PG_ADMIN_DSN) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)', admin_dsn)


def pg_recreate(database: str, admin_dsn: str = PG_ADMIN_DSN) -> None:
    """A fresh, empty database of that name (the bench's own: never a shared one)."""
    pg_drop(database, admin_dsn)
    pg_admin(f'CREATE DATABASE "{database}"', admin_dsn)


def pg_query(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def pg_version(dsn: str) -> str:
    return "PostgreSQL " + str(pg_query(dsn, "SHOW server_version")[0][0]).split()[0]


# The app: its settings and its processes ---------------------------------------------------------

# The app's configuration from the environment: a bench sets what it measures itself, so
# nothing leaks in from the shell that ran it.
APP_SETTINGS = (
    "DATABASE_URL",
    "CACHE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_DEBUG",
    "SWITCHBOARD",
    "DELIVERY_",
    "REPLAY_",
    "AUDIENCE_",
    "JOB_",
)


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment (this process's by default) without the app's configuration."""
    env = dict(os.environ) if env is None else env
    return {k: v for k, v in env.items() if not k.startswith(APP_SETTINGS)}


def django_setup() -> None:
    """Django in this process, with the settings the environment gives now."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.project.settings")
    import django

    django.setup()


def load_app() -> None:
    """Django in a bench process that is not one of the app's, for the app's own constants
    (imported, never copied): with none of the shell's configuration and a scratch data
    directory for the keys settings generate (never the checkout's var/). Settings are read
    once, here; the environment is then put back as it was."""
    saved = dict(os.environ)
    scratch = tempfile.mkdtemp(prefix="switchboard-bench-settings-")
    atexit.register(shutil.rmtree, scratch, True)
    os.environ.clear()
    os.environ.update(clean_env(saved) | {"SWITCHBOARD_DATA_DIR": scratch})
    try:
        django_setup()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py ARGS`` run to completion; its output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


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


# docs/benchmarks.md ------------------------------------------------------------------------------

DOCS_INTRO = """\
Each section below is produced by a script in `bench/`, named at the top of the section, on
the machine the section describes. To rerun one, run its script from the repository root, e.g.
`uv run python bench/ingest.py --write-docs` for Ingest (it rewrites the measurements between
its markers and keeps the analysis after them); each script's docstring lists its options.
"""


def write_docs(section: str, script: str, heading: str, preamble: str = "") -> None:
    """Replace what is between ``script``'s markers in docs/benchmarks.md, or append its
    section (``heading``, ``preamble``, markers) at the end; nothing else changes. The file is
    read just before it is written: other scripts write their own sections."""
    begin = f"<!-- bench/{script} writes from here -->"
    end = f"<!-- bench/{script} writes up to here -->"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if DOCS_INTRO not in text:
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{DOCS_INTRO}{rest}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        text = f"{before}{begin}\n{section}{end}{after}"
    else:
        preamble = f"{preamble}\n\n" if preamble else ""
        text = f"{text.rstrip()}\n\n{heading}\n\n{preamble}{begin}\n{section}{end}\n"
    DOCS.write_text(text)
    print(f"\nwrote {DOCS.relative_to(ROOT)}")

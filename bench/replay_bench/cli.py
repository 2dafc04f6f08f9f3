"""The replay benchmark's command line: a child process's role, or the whole run (the fake
Refiner, then each backend's phases, then the report and, with ``--write-docs``, its section
of docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from deliver_bench.backends import Backend, PostgresBackend, SqliteBackend
from deliver_bench.refiner import fake_refiner
from measure.app import load_app
from measure.docs import write_docs
from measure.paths import DOCS
from measure.profiler import Profiler

from replay_bench.config import BROKER_URL, CACHE_URL, PG_BENCH_DB, QUEUE_PREFIX, Plan, Workers
from replay_bench.phases import run_backend
from replay_bench.report import HEADING, PREAMBLE, markdown
from replay_bench.roles import ROLES


def app_setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.isupper():
        raise argparse.ArgumentTypeError(f"{text!r}: a setting is NAME=VALUE, e.g. REPLAY_LANES=1")
    return name, value


def arguments(argv: Sequence[str], description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--db", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="small numbers: a smoke test")
    parser.add_argument("--events", type=int, help="history events (1,000,000; quick 20,000)")
    parser.add_argument("--live", type=int, help="live events of the floor (50,000; quick 5,000)")
    parser.add_argument("--rate", type=float, default=200.0, help="latency phase's events/s")
    parser.add_argument("--latency-seconds", type=float, help="latency phase's length (30)")
    parser.add_argument("--web-workers", type=int, default=2, help="web server processes")
    parser.add_argument(
        "--app-env",
        action="append",
        default=[],
        type=app_setting,
        metavar="NAME=VALUE",
        help="a setting for the app's processes, e.g. REPLAY_LANES=1 (an experiment)",
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy the workers into DIR")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep data directories and logs under DIR"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite its part of {DOCS.name}"
    )
    args = parser.parse_args(argv)
    full = not (args.quick or args.events or args.live or args.latency_seconds is not None)
    if args.write_docs and (not full or args.db != "both" or args.profile or args.app_env):
        parser.error(
            "--write-docs needs a full run: both databases, the default sizes and settings, "
            "no --quick, no --profile"
        )
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    quick = args.quick
    return Plan(
        events=args.events or (20_000 if quick else 1_000_000),
        live=args.live or (5_000 if quick else 50_000),
        rate=args.rate,
        latency_seconds=(10 if quick else 30)
        if args.latency_seconds is None
        else args.latency_seconds,
        web_workers=args.web_workers,
        workers=Workers.as_start_runs_them(),
        app_env=tuple(args.app_env),
    )


@contextlib.contextmanager
def work_directory(keep: Path | None, kind: str) -> Iterator[Path]:
    """A temporary directory for one backend's data and logs, or ``keep/kind`` to keep."""
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=f"switchboard-replay-{kind}-") as tmp:
            yield Path(tmp)
        return
    directory = keep.resolve() / kind
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    yield directory
    print(f"kept {directory}")


def backend_of(kind: str, data_dir: Path) -> Backend:
    queue = f"{QUEUE_PREFIX}-{kind}"
    if kind == "postgres":
        return PostgresBackend(data_dir, queue, PG_BENCH_DB, BROKER_URL, CACHE_URL)
    return SqliteBackend(data_dir, queue)


def main(argv: Sequence[str], description: str = "") -> int:
    if argv and argv[0] in ROLES:
        return ROLES[argv[0]](argv[1:])
    args = arguments(argv, description)
    load_app()
    plan = plan_of(args)
    profiler = Profiler(args.profile)
    runs = []
    started = time.monotonic()
    with fake_refiner() as fake:
        for kind in ("postgres", "sqlite") if args.db == "both" else (args.db,):
            with work_directory(args.keep, kind) as work_dir:
                backend = backend_of(kind, work_dir / "data")
                runs.append(run_backend(backend, plan, fake, profiler, work_dir))
    section = markdown(runs, plan)
    print("\n" + section)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.write_docs:
        write_docs(section, "replay.py", HEADING, PREAMBLE)
    problems = [f"{run.backend.kind}: {p}" for run in runs for p in run.problems()]
    if problems:
        print(f"NOT VERIFIED: {problems}", file=sys.stderr)
        return 1
    return 0

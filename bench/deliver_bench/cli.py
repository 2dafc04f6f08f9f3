"""The delivery benchmark's command line: a child process's role, or the whole run (the fake
Refiner, then each backend's phases, then the report and, with ``--write-docs``, its section of
docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from measure.app import load_app
from measure.docs import write_docs
from measure.paths import DOCS
from measure.profiler import Profiler

from deliver_bench.app import seed_role, setup_role
from deliver_bench.backends import PostgresBackend, SqliteBackend
from deliver_bench.config import DEFAULT_CONFIGS, LATENCY_CONFIG, QUICK_CONFIGS, Plan, WorkerConfig
from deliver_bench.phases import run_backend
from deliver_bench.refiner import ceiling_role, fake_refiner, serve_role
from deliver_bench.report import HEADING, markdown
from deliver_bench.results import Ceiling

# ``deliver.py ROLE ARGS``: what the run starts in child processes.
ROLES: dict[str, Callable[[Sequence[str]], int]] = {
    "serve": serve_role,
    "ceiling": ceiling_role,
    "setup": setup_role,
    "seed": seed_role,
}


def plan_from_arguments(argv: Sequence[str], description: str) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=description)
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
    return args, plan


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


def main(argv: Sequence[str], description: str = "") -> int:
    if argv and argv[0] in ROLES:
        return ROLES[argv[0]](argv[1:])
    args, plan = plan_from_arguments(argv, description)
    load_app()
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
        write_docs(section, "deliver.py", HEADING)
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

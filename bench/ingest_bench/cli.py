"""The ingest benchmark's command line and the whole run: each backend's phases, then the
report and, with ``--write-docs``, its section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from measure.app import load_app
from measure.docs import write_docs
from measure.paths import DOCS

from ingest_bench.backends import Backend, PostgresBackend, SqliteBackend
from ingest_bench.config import REDIS_URL, Plan
from ingest_bench.phases import run_backend
from ingest_bench.report import HEADING, PREAMBLE, markdown, wrap


def main(argv: Sequence[str] | None = None, description: str = "") -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="5-second phases: a smoke test")
    parser.add_argument(
        "--workers", type=int, default=2, help="web server processes (start's default)"
    )
    parser.add_argument("--connections", type=int, default=16, help="phase a's connections")
    parser.add_argument("--batch-connections", type=int, default=4, help="phase b's connections")
    parser.add_argument("--rate", type=float, default=200.0, help="phase c's requests/s")
    parser.add_argument("--high-rate", type=float, default=500.0, help="phase e's requests/s")
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
        high_rate=args.high_rate,
        workers=args.workers,
        cache_url=args.cache_url,
    )
    load_app()
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
        write_docs(section, "ingest.py", HEADING, wrap(PREAMBLE))
    mismatched = [
        f"{r.backend.kind}: {p.name}" for r in runs for p in r.phases.values() if not p.verified
    ]
    if mismatched:
        print(f"COUNT MISMATCH in {mismatched}", file=sys.stderr)
        return 1
    return 0

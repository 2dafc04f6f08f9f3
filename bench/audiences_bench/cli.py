"""The audiences benchmark's command line: a child process's role, or the whole run (each
backend's phases, then the report and, with ``--write-docs``, its section of
docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from measure.app import load_app
from measure.docs import write_docs
from measure.paths import DOCS

from audiences_bench.backends import make_backend
from audiences_bench.config import Plan
from audiences_bench.phases import run_backend
from audiences_bench.report import HEADING, PREAMBLE, markdown, wrap
from audiences_bench.roles import ROLE_FUNCTIONS, django_role

# ``audiences.py ROLE JSON``: what the run starts in child processes.
ROLES: dict[str, Callable[[Sequence[str]], int]] = {
    name: django_role(name) for name in ROLE_FUNCTIONS
}


def main(argv: Sequence[str], description: str = "") -> int:
    if argv and argv[0] in ROLES:
        return ROLES[argv[0]](argv[1:])
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="10x smaller: a smoke test")
    parser.add_argument("--web-workers", type=int, default=2, help="web server processes")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="cProfile each timed call into DIR"
    )
    parser.add_argument(
        "--write-docs", action="store_true", help=f"rewrite the section in {DOCS.name}"
    )
    args = parser.parse_args(argv)
    if args.write_docs and (args.quick or args.db != "both" or args.profile):
        parser.error("--write-docs needs a full run: both databases, no --quick, no --profile")
    plan = Plan.make(quick=args.quick, web_workers=args.web_workers)
    load_app()
    started = time.monotonic()
    runs = []
    for kind in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        with tempfile.TemporaryDirectory(prefix=f"switchboard-audiences-{kind}-") as data_dir:
            profile = args.profile.resolve() if args.profile else None
            runs.append(run_backend(make_backend(kind, Path(data_dir)), plan, profile))
    section = markdown(runs, plan)
    print("\n" + section)
    print(f"total {time.monotonic() - started:.0f} s")
    if args.write_docs:
        write_docs(section, "audiences.py", HEADING, wrap(PREAMBLE))
    problems = [f"{r.backend.kind}: {p}" for r in runs for p in r.problems()]
    if problems:
        print(f"NOT VERIFIED: {problems}", file=sys.stderr)
        return 1
    return 0

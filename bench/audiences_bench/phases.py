"""Every phase against one backend, on a fresh database: the setup, the history at the small
size and two first computations, the history grown to the full size and two more, the window
pass, the 10 live audiences, the ingest phase's A/B rounds and the worker-side re-evaluation.
The database is dropped and the broker's queue purged whatever happens."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from measure.app import clean_env, manage
from measure.paths import ROOT
from measure.servers import HOST, free_port, start_server

from audiences_bench.backends import Backend
from audiences_bench.config import SELF, SHIFT_DAYS, Plan
from audiences_bench.ingest import Part, run_rounds


@dataclass
class BackendRun:
    backend: Backend
    version: str = ""
    seed_seconds: dict[str, float] = field(default_factory=dict)
    computes: list[dict[str, Any]] = field(default_factory=list)
    window: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    parts: list[Part] = field(default_factory=list)
    reevaluate: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = [f"{c['label']}: {p}" for c in self.computes for p in c["problems"]]
        found += [f"window: {p}" for p in self.window.get("problems", [])]
        found += [f"ingest {p.mode}{p.round} {p.kind}" for p in self.parts if not p.verified]
        return found


def role(name: str, env: dict[str, str], params: dict[str, Any]) -> dict[str, Any]:
    """Run one of the benchmark's Django roles in a child process; its progress goes to this
    terminal, its result is the JSON on the last line of its output."""
    done = subprocess.run(
        [*SELF, name, json.dumps(params)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"audiences.py {name} failed:\n{done.stdout}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def seed(env: dict[str, str], plan: Plan, start: int, count: int, run: BackendRun) -> None:
    print(f"-- seeding events {start:,} to {start + count:,}", flush=True)
    seconds = role("seed", env, {"users": plan.users, "start": start, "count": count})
    for key, value in seconds.items():
        run.seed_seconds[key] = run.seed_seconds.get(key, 0.0) + value
    print("   " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()), flush=True)


def first_computations(env: dict[str, str], size: int, profile: str, run: BackendRun) -> None:
    for target in (False, True):
        label = f"{size // 1000}k" + (" synced" if target else "")
        params = {"label": label, "target": target, "profile": profile}
        result = role("compute", env, params)
        run.computes.append(result)
        print(
            f"-- first computation, {result['events']:,} events, {result['users']:,} users, "
            f"{'a Refiner target (syncs stored)' if target else 'no target (no syncs)'}: "
            f"{result['seconds']:.2f} s (floor {result['floor_seconds']:.3f} s, "
            f"{result['floor_rows']:,} rows); {result['members']:,} members, "
            f"{result['synced']:,} syncs stored; CPU {result['cpu_seconds']:.1f} s + database "
            f"{result['db_cpu_seconds']:.1f} s; RSS {result['rss_before_mb']:.0f} MB before, "
            f"peak {result['rss_peak_mb']:.0f} MB; "
            + ("verified" if not result["problems"] else f"PROBLEMS {result['problems']}"),
            flush=True,
        )


def window_pass(env: dict[str, str], profile: str, run: BackendRun) -> None:
    run.window = role("window", env, {"shift": SHIFT_DAYS, "profile": profile})
    window = run.window
    print(
        f"-- window audience: {window['members']:,} of {window['users']:,} users, first "
        f"computed in {window['initial_seconds']:.1f} s (setup), then a Refiner target",
        flush=True,
    )
    for p in window["passes"]:
        print(
            f"-- window pass, {p['label']}: {p['seconds']:.2f} s (floor "
            f"{p['floor_seconds']:.3f} s); {p['changed']:,} changes ({p['left']:,} left); CPU "
            f"{p['cpu_seconds']:.1f} s + database {p['db_cpu_seconds']:.1f} s; RSS "
            f"{p['rss_before_mb']:.0f} MB before, peak {p['rss_peak_mb']:.0f} MB",
            flush=True,
        )
    print(
        f"   {window['synced']:,} syncs stored; "
        + ("verified" if not window["problems"] else f"PROBLEMS {window['problems']}"),
        flush=True,
    )


def ingest_phase(
    env: dict[str, str], plan: Plan, write_key: str, run: BackendRun, data_dir: Path
) -> None:
    backend = run.backend
    backend.purge()
    port = free_port()
    print(f"-- manage.py start --no-worker on {HOST}:{port}, {plan.web_workers} web processes")
    server = start_server(env, port, plan.web_workers, data_dir / "server.log", "--no-worker")
    try:
        auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        run.parts = run_rounds(backend, server, port, auth, plan)
    finally:
        server.stop(timeout=25)
        backend.purge()


def run_backend(backend: Backend, plan: Plan, profile: Path | None) -> BackendRun:
    print(f"\n=== {backend.title}: fresh database", flush=True)
    env = clean_env() | backend.env() | {"LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    profiled = str(profile / backend.kind) if profile else ""
    run = BackendRun(backend)
    started = time.monotonic()
    try:
        backend.create()
        manage(env, "migrate", "--verbosity", "0")
        run.version = backend.version()
        made = role("setup", env, {})
        seed(env, plan, 0, plan.small_events, run)
        first_computations(env, plan.small_events, profiled, run)
        seed(env, plan, plan.small_events, plan.events - plan.small_events, run)
        first_computations(env, plan.events, profiled, run)
        window_pass(env, profiled, run)
        print("-- the 10 live audiences", flush=True)
        run.live = role("live", env, {})
        ingest_phase(env, plan, made["write_key"], run, backend.data_dir)
        run.reevaluate = role("reevaluate", env, {"profile": profiled})
        r = run.reevaluate
        print(
            f"-- worker side: live.reevaluate of {r['users']} touched users against the 10 "
            f"audiences: {r['seconds']:.2f} s = {1000 * r['seconds'] / max(r['users'], 1):.2f} "
            f"ms per user, {r['changes']} changes; CPU {r['cpu_seconds']:.2f} s + database "
            f"{r['db_cpu_seconds']:.2f} s",
            flush=True,
        )
        print(f"   {backend.kind} done in {time.monotonic() - started:.0f} s", flush=True)
        return run
    finally:
        backend.drop()

"""The ingest benchmark's section of docs/benchmarks.md: method, machine, one table per backend
and the targets, as Markdown."""

from __future__ import annotations

import os
import platform
import sqlite3
import textwrap

import psycopg
from measure.machine import command_output, cpu_model
from measure.paths import ROOT
from measure.postgres import PG_ADMIN_DSN

from ingest_bench.config import (
    BASELINE_CPU_MS,
    BATCH_SIZE,
    DISTURBED_CORES,
    TARGET_BATCH_CEILING_SHARE,
    TARGET_BATCH_EVENTS,
    TARGET_CPU_SHARE,
    TARGET_FLOOR_SHARE,
    TARGET_HIGH_RATE_P99_MS,
    TARGET_P99_MS,
    TARGET_SINGLE_REQUESTS,
    USERS,
    Plan,
)
from ingest_bench.phases import BackendRun

HEADING = "## Ingest"
PREAMBLE = (
    "Produced by `bench/ingest.py --write-docs`: it rewrites what is between its markers; the "
    "analysis after them is kept."
)


def machine_lines() -> list[str]:
    """The code, the machine and the versions of what ran, for the section's Machine part."""
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
    """The section between the markers: method, machine, one table per backend, targets."""
    from dashboard.project.webserver import THREADS

    method = [
        f"Server: `manage.py start --host 127.0.0.1 --port N --web-workers {plan.workers}` as in "
        f"production: migrations, then {plan.workers} waitress processes x {THREADS} threads "
        "and the Celery delivery worker with its scheduler (idle: no destinations), "
        "`LOG_LEVEL=WARNING`, `DEBUG` off. SQLite: only `SWITCHBOARD_DATA_DIR` (a temporary "
        "directory), the embedded default, with its ingest writer process (the server's CPU "
        "includes it). PostgreSQL: `DATABASE_URL` to a fresh database on "
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
        f"(latency counted from the scheduled send time); e. the same at {plan.high_rate:g} "
        "requests/s; f. the HTTP floor: the server restarted with "
        "`SWITCHBOARD_WSGI_APPLICATION=ingest_bench.floor_app.application` (the same waitress "
        "processes; `POST /v1/track`, answered on the event loop as ingest is, reads the body, "
        "authenticates the write key with ingest's cached lookup and answers without storing), "
        "loaded as phase a; d. the "
        "ceiling: with the server stopped, phase b's stored rows inserted again under new "
        f"messageIds by one connection, {BATCH_SIZE} rows per transaction.",
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
            "| CPU ms per request: server / database | CPU ms per event "
            "| cores busy: server / database / load generator / other | verified |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
        ]
        for result in backend_run.phases.values():
            tally, cpu = result.tally, result.cpu
            lines.append(
                f"| {result.name} ({result.note}) | {tally.requests:,} | {tally.events:,} "
                f"| {result.events_per_second:,.0f} | {result.requests_per_second:,.0f} "
                f"| {result.latency_ms(0.5):.1f} | {result.latency_ms(0.99):.1f} "
                f"| {result.latency_ms(1):.1f} "
                f"| {result.cpu_ms('server'):.1f} / {result.cpu_ms('database'):.1f} "
                f"| {result.cpu_ms_per_event():.2f} "
                f"| {cpu['server']:.2f} / {cpu['database']:.2f} / {cpu['load generator']:.2f} "
                f"/ {cpu['other']:.2f} | {'yes' if result.verified else 'NO'} |"
            )
        for ceiling in backend_run.ceilings:
            lines.append(
                f"| d. ceiling: {ceiling.method}, {BATCH_SIZE} rows per transaction "
                f"| | {ceiling.rows:,} | {ceiling.rows_per_second:,.0f} | | | | | | | | yes |"
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
        "### Targets (both backends)",
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
    """(target, measured, met) for each target of the issue that set them."""
    single, batch, rate, high, floor = (backend_run.phases[p] for p in "abcef")
    ceiling = max((c.rows_per_second for c in backend_run.ceilings), default=0.0)
    floor_share = single.requests_per_second / floor.requests_per_second
    ceiling_share = batch.events_per_second / ceiling if ceiling else 0.0
    baseline_single, baseline_batch = BASELINE_CPU_MS[backend_run.backend.kind]
    p99, high_p99 = rate.latency_ms(0.99), high.latency_ms(0.99)
    return [
        (
            f">= {TARGET_BATCH_EVENTS:,} events/s in batches of {BATCH_SIZE}, or >= "
            f"{TARGET_BATCH_CEILING_SHARE:.0%} of the database ceiling",
            f"{batch.events_per_second:,.0f} events/s = {ceiling_share:.0%} of {ceiling:,.0f}; "
            f"CPU bound {batch.cpu_bound() * BATCH_SIZE:,.0f}",
            batch.events_per_second >= TARGET_BATCH_EVENTS
            or ceiling_share >= TARGET_BATCH_CEILING_SHARE,
        ),
        (
            f">= {TARGET_SINGLE_REQUESTS:,} single-event requests/s and >= "
            f"{TARGET_FLOOR_SHARE:.0%} of the HTTP floor",
            f"{single.requests_per_second:,.0f} requests/s = {floor_share:.0%} of "
            f"{floor.requests_per_second:,.0f}; CPU bound {single.cpu_bound():,.0f}",
            single.requests_per_second >= TARGET_SINGLE_REQUESTS
            and floor_share >= TARGET_FLOOR_SHARE,
        ),
        (
            f"p99 < {TARGET_P99_MS} ms at {plan.rate:g} requests/s offered",
            f"{p99:.1f} ms",
            p99 < TARGET_P99_MS,
        ),
        (
            f"p99 < {TARGET_HIGH_RATE_P99_MS} ms at {plan.high_rate:g} requests/s offered",
            f"{high_p99:.1f} ms",
            high_p99 < TARGET_HIGH_RATE_P99_MS,
        ),
        cpu_target("single event", single.cpu_ms_per_event(), baseline_single),
        cpu_target("batched event", batch.cpu_ms_per_event(), baseline_batch),
    ]


def cpu_target(what: str, measured: float, baseline: float) -> tuple[str, str, bool]:
    return (
        f"CPU per {what} (server + database) <= {TARGET_CPU_SHARE:.0%} of 407a8df's "
        f"{baseline:g} ms",
        f"{measured:.2f} ms = {measured / baseline:.0%}",
        measured <= TARGET_CPU_SHARE * baseline,
    )

"""The audiences benchmark's section of docs/benchmarks.md: method, machine, one set of tables
per backend (first computation, window pass, ingest A/B) and the targets, as Markdown."""

from __future__ import annotations

import os
import platform
import textwrap
from collections.abc import Sequence
from typing import Any

from measure.machine import command_output, cpu_model
from measure.paths import ROOT

from audiences_bench.config import (
    BATCH_SIZE,
    FLAT_MB,
    LIVE_AUDIENCES,
    SHIFT_DAYS,
    TARGET_FIRST_SECONDS,
    TARGET_INGEST_RATIO,
    TARGET_WINDOW_SECONDS,
    Plan,
)
from audiences_bench.ingest import MODES, Comparison, compare
from audiences_bench.phases import BackendRun

HEADING = "## Audiences"
PREAMBLE = (
    "Produced by `bench/audiences.py --write-docs`: it rewrites what is between its markers; "
    "the analysis after them is kept."
)


def wrap(text: str, first: str = "", rest: str = "") -> str:
    """``text`` as Markdown lines of at most 100 characters."""
    return textwrap.fill(
        text, 100, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False
    )


def method(plan: Plan) -> list[str]:
    from django.conf import settings

    from destinations.audiences.compute import CHUNK
    from destinations.audiences.live import LIVE_CACHE_SECONDS

    return [
        f"Data, written in bulk before anything is timed: {plan.users:,} users (a plan and a "
        f"country each), then {plan.small_events:,} track events, grown later to "
        f"{plan.events:,} (the same users), with ~350-byte payloads and timestamps spread over "
        "30 days; each user's first event is a Session Started, a fifth of the users get four "
        "fifths of the rest; then statistics (`ANALYZE`).",
        "First computation: a new audience's job work, `compute(audience)`, timed in the "
        "process of a child role (as the worker runs it; no worker runs), at each size: once "
        "with no destination (syncs are then not stored) and once with a Refiner destination "
        "targeted (each member's identify stored and its delivery planned; nothing is sent). "
        "Definition: user `traits.plan` equals trial and performed Report Exported at least 3 "
        f"times in the last 7 days. Changes are confirmed and written in chunks of {CHUNK}. "
        "The floor: `SELECT profile_id, count(*) FROM destinations_event WHERE event = ... AND "
        "timestamp >= ... GROUP BY profile_id`, fetched in the same process just before, best "
        "of 3 after a warm-up. Verified: the members are exactly those of the floor's rows with "
        "3 or more whose stored plan is trial; syncs stored = members (or none).",
        "Memory: `VmHWM` of the role's process after resetting it (`/proc/self/clear_refs`) just "
        "before the timed call, against `VmRSS` then; *growth* is the difference. Flat: the "
        f"growth at {plan.events:,} events within {FLAT_MB:g} MB of that at "
        f"{plan.small_events:,}.",
        "Window pass: `run_window_pass(now=...)` over an audience every user is in (Session "
        f"Started in the last 30 days; first computed untimed, then given a Refiner target); "
        f"once at now (nothing changes), once at now + {SHIFT_DAYS} days (those without a "
        "session since leave, each synced). Floor: the same GROUP BY for Session Started. "
        "Verified against that floor: who stays, the changes, the syncs stored.",
        "Ingest: `manage.py start --no-worker` (the web server processes as production runs "
        f"them, {plan.web_workers} processes), the {len(LIVE_AUDIENCES)} live audiences "
        "created and computed before, and an untimed warm-up (half a round, audiences "
        "live). Rounds alternate A (every audience's `computed_at` "
        "cleared: none is live) and B (all live), "
        f"{plan.rounds} of each, waiting {LIVE_CACHE_SECONDS:g} s + 0.5 s after switching for "
        f"the web processes' cached answer to expire. A round: {plan.singles:,} single-event "
        f"`POST /v1/track` ({plan.connections} connections), then {plan.batches} `POST "
        f"/v1/batch` of {BATCH_SIZE} (2 connections), Report Exported by users drawn from "
        "all; each part metered apart from /proc (web processes, database processes), "
        f"including the {settings.AUDIENCE_COALESCE_SECONDS:g} s + 0.5 s after the last answer "
        "in which the coalescer sends. In B the web processes' extra work is the "
        "`events_stored` receiver and the coalescer sending `reevaluate_audiences` tasks; the "
        "re-evaluation itself runs in a worker, which does not run here: the tasks wait in the "
        "broker, where they are counted (none in A; every user sent an event in B). Verified: "
        "every request 200, every event stored, the tasks as said.",
        "Worker side, for scale: `live.reevaluate` of AUDIENCE_TASK_BATCH "
        f"({settings.AUDIENCE_TASK_BATCH}) users who were sent events, against the "
        f"{len(LIVE_AUDIENCES)} audiences, in a child role's process.",
    ]


def machine_lines(runs: Sequence[BackendRun]) -> list[str]:
    import django

    memory = command_output("free", "-h").splitlines()
    total = memory[1].split()[1] if len(memory) > 1 else "unknown"
    commit = command_output("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")
    dirty = command_output(
        "git", "-C", str(ROOT), "status", "--porcelain", "--", "destinations", "dashboard"
    )
    return [
        f"- Code: commit {commit}" + (" with uncommitted changes to the app" if dirty else ""),
        f"- `nproc`: {command_output('nproc')}; CPU: {cpu_model()}; memory: {total}",
        f"- Python {platform.python_version()}, Django {django.__version__}, "
        + ", ".join(run.version for run in runs),
        "- Load average when the report was written: "
        + " ".join(f"{n:.2f}" for n in os.getloadavg()),
    ]


def first_table(run: BackendRun) -> list[str]:
    lines = [
        "| events | users | Refiner target | members | syncs stored | seconds | floor s "
        "| x floor | CPU s: process / database | RSS MB: before / peak | growth MB | verified |",
        "|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for c in run.computes:
        lines.append(
            f"| {c['events']:,} | {c['users']:,} | {'yes' if c['target'] else 'no'} "
            f"| {c['members']:,} | {c['synced']:,} | {c['seconds']:.2f} "
            f"| {c['floor_seconds']:.3f} | {c['seconds'] / c['floor_seconds']:.0f} "
            f"| {c['cpu_seconds']:.1f} / {c['db_cpu_seconds']:.1f} "
            f"| {c['rss_before_mb']:.0f} / {c['rss_peak_mb']:.0f} | {growth(c):.0f} "
            f"| {'yes' if not c['problems'] else 'NO'} |"
        )
    return lines


def window_table(run: BackendRun) -> list[str]:
    w = run.window
    lines = [
        f"Window audience: {w['members']:,} members of {w['users']:,} users (first computed in "
        f"{w['initial_seconds']:.1f} s, untimed setup); {w['synced']:,} syncs stored; verified: "
        f"{'yes' if not w['problems'] else 'NO'}.",
        "",
        "| pass | members before | left | seconds | floor s | x floor "
        "| CPU s: process / database | RSS MB: before / peak |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for p in w["passes"]:
        when = "at now" if p["label"] == "unchanged" else f"at now + {SHIFT_DAYS} days"
        lines.append(
            f"| {when} | {p['members_before']:,} | {p['left']:,} | {p['seconds']:.2f} "
            f"| {p['floor_seconds']:.3f} | {p['seconds'] / p['floor_seconds']:.0f} "
            f"| {p['cpu_seconds']:.1f} / {p['db_cpu_seconds']:.1f} "
            f"| {p['rss_before_mb']:.0f} / {p['rss_peak_mb']:.0f} |"
        )
    return lines


def ingest_table(run: BackendRun) -> list[str]:
    lines = [
        "| requests | mode | events | web CPU ms/event | database CPU ms/event "
        "| B / A (web), all rounds | B / A by round | verified |",
        "|---|---|--:|--:|--:|--:|---|---|",
    ]
    for kind in ("single", "batch"):
        c = compare(run.parts, kind)
        ok = all(p.verified for p in run.parts if p.kind == kind)
        for mode in "AB":
            lines.append(
                f"| {kind} | {mode}: {MODES[mode]} | {c.events[mode]:,} | {c.web_ms[mode]:.3f} "
                f"| {c.database_ms[mode]:.3f} | "
                + (f"{c.ratio:.3f} | " + ", ".join(f"{r:.2f}" for r in c.round_ratios)
                   if mode == "B" else " | ")
                + f" | {'yes' if ok else 'NO'} |"
            )  # fmt: skip
    r = run.reevaluate
    lines += [
        "",
        wrap(
            f"Worker side: `live.reevaluate` of {r['users']} touched users against the 10 "
            f"audiences took {r['seconds']:.2f} s ({1000 * r['seconds'] / max(r['users'], 1):.2f}"
            f" ms per user; CPU {r['cpu_seconds']:.2f} s here + {r['db_cpu_seconds']:.2f} s "
            f"in PostgreSQL) and made {r['changes']} changes."
        ),
    ]
    return lines


def growth(result: dict[str, Any]) -> float:
    return float(result["rss_peak_mb"] - result["rss_before_mb"])


def targets(run: BackendRun) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the backend's run."""
    full = [c for c in run.computes if c["events"] == max(x["events"] for x in run.computes)]
    small = [c for c in run.computes if c not in full]
    checks = [
        (
            f"first computation at the full size < {TARGET_FIRST_SECONDS:g} s"
            + (", Refiner target" if c["target"] else ", no target"),
            f"{c['seconds']:.1f} s",
            c["seconds"] < TARGET_FIRST_SECONDS,
        )
        for c in full
    ]
    for big, little in zip(full, small, strict=True):
        more = growth(big) - growth(little)
        checks.append(
            (
                "memory flat in the number of events"
                + (", Refiner target" if big["target"] else ", no target"),
                f"growth {growth(little):.0f} MB at {little['events']:,}, {growth(big):.0f} MB "
                f"at {big['events']:,}",
                more < FLAT_MB,
            )
        )
    for p in run.window["passes"]:
        checks.append(
            (
                f"window pass < {TARGET_WINDOW_SECONDS:g} s, {p['label']}",
                f"{p['seconds']:.2f} s",
                p["seconds"] < TARGET_WINDOW_SECONDS,
            )
        )
    for kind in ("single", "batch"):
        c: Comparison = compare(run.parts, kind)
        checks.append(
            (
                f"ingest web CPU per event, 10 live / none <= {TARGET_INGEST_RATIO:g}, {kind}",
                f"{c.ratio:.3f}",
                c.ratio <= TARGET_INGEST_RATIO,
            )
        )
    return checks


def markdown(runs: Sequence[BackendRun], plan: Plan) -> str:
    lines = ["### Method", "", *(wrap(item, "- ", "  ") for item in method(plan))]
    lines += ["", "### Machine", "", *machine_lines(runs)]
    for run in runs:
        lines += ["", f"### Results: {run.version} ({run.backend.title})", ""]
        lines += ["First computation:", "", *first_table(run), ""]
        lines += ["Window pass:", "", *window_table(run), ""]
        lines += ["Ingest, A/B rounds:", "", *ingest_table(run)]
    if plan.quick:
        lines += ["", "QUICK RUN: sizes 10x smaller; the targets are for the full size."]
    kinds = " | ".join(r.backend.kind for r in runs)
    lines += ["", "### Targets", "", f"| target | {kinds} |"]
    lines += ["|---|" + "---|" * len(runs)]
    checks = [targets(r) for r in runs]
    for i, (label, _, _) in enumerate(checks[0]):
        cells = [f"{c[i][1]} ({'met' if c[i][2] else 'MISSED'})" for c in checks]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

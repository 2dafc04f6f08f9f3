"""The delivery benchmark's section of docs/benchmarks.md: method, machine, the three phases'
tables and the targets, as Markdown."""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence

import requests
from measure.machine import command_output, cpu_model

from deliver_bench.config import (
    DRAIN_SECONDS,
    TARGET_P95_SECONDS,
    TARGET_RATE,
    TARGET_SHARE,
    USERS,
    Plan,
    shape_text,
)
from deliver_bench.results import BackendRun, Ceiling

HEADING = "## Delivery (`bench/deliver.py`)"


def machine_lines(versions: Sequence[str]) -> list[str]:
    """The machine and the versions of what ran (``versions``: the databases'), for the
    section's Machine part."""
    import celery
    import django
    import kombu
    import urllib3

    cpu = cpu_model()
    memory = command_output("free", "-h").splitlines()
    total = memory[1].split()[1] if len(memory) > 1 else "unknown"
    redis_version = command_output("redis-server", "--version").split(" v=")[-1].split()[0]
    return [
        f"- `nproc`: {command_output('nproc')}; CPU: {cpu}; memory: {total} (`free -h`)",
        f"- Python {platform.python_version()}, Django {django.__version__}, Celery "
        f"{celery.__version__}, kombu {kombu.__version__}, requests {requests.__version__}, "
        f"urllib3 {urllib3.__version__}; {', '.join(versions)}; Redis {redis_version}",
    ]


def markdown(
    runs: Sequence[BackendRun], ceilings: dict[tuple[int, int], Ceiling], plan: Plan
) -> str:
    """The section between the markers: method, machine, one table per phase, targets. The
    app's defaults it quotes come from the app (the bench process has Django loaded)."""
    from django.conf import settings

    from dashboard.project.webserver import THREADS
    from destinations.connectors.refiner.connector import RefinerConnector

    latency_runs = [r for r in runs if r.latency is not None]
    lines = [
        "### Method",
        "",
        "- Destination: one Refiner destination whose base URL is a fake Refiner on loopback, a "
        'minimal asyncio HTTP/1.1 keep-alive server in its own process answering `{"message":'
        '"ok"}` at once; it counts requests, so every run checks one request per delivery. The '
        "destination's rate limit is lifted (the connector's default is Refiner's "
        f"{RefinerConnector.requests_per_minute:,} requests/minute per key); every other "
        "delivery setting is the default.",
        f"- Throughput: {plan.events:,} events (3 `track` for each `identify`, from "
        f"{USERS:,} users) are stored through the app's ingest path (`validate_message`, "
        "`store_messages`: deliveries planned in the same transaction, one `destinations.deliver`"
        f" task per {settings.DELIVERY_TASK_BATCH} enqueued on commit) while no worker runs. "
        "Then the worker processes start "
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
        f"then waitress processes x {THREADS} threads; `--no-worker` is the scale-out form, "
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
        *machine_lines([run.version for run in runs]),
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


# A target's cell for one backend: the measured value and whether it met the target.
TargetCheck = Callable[[BackendRun, dict[tuple[int, int], Ceiling]], str]


def target_checks(plan: Plan) -> list[tuple[str, TargetCheck]]:
    """The three targets: best deliveries/s, share of the ceiling, p95 under load."""

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

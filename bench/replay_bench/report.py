"""The replay benchmark's section of docs/benchmarks.md (also printed at the end of a run):
method, machine, one column per backend, the targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from deliver_bench.config import USERS
from deliver_bench.report import machine_lines
from measure.machine import command_output

from replay_bench.config import (
    DRAIN_SECONDS,
    HISTORY_DAYS,
    RAMP_SECONDS,
    SERVICES,
    USER_STRIDE,
    Plan,
)
from replay_bench.results import BackendRun, LiveLoad

HEADING = "## Replay (`bench/replay.py`)"
PREAMBLE = (
    "Produced by `bench/replay.py --write-docs`: it rewrites what is between its markers; the "
    "analysis after them is kept."
)


def method_lines(plan: Plan) -> list[str]:
    """How the run was made, with the app's own defaults (the bench process has Django)."""
    from django.conf import settings

    from dashboard.project.webserver import THREADS
    from destinations.ingest.store import INSERT_CHUNK

    workers = plan.workers
    settings_given = ", ".join(f"`{name}={value}`" for name, value in plan.app_env)
    # An experiment's settings, given to the app's processes; the defaults quoted above are not
    # what ran where they differ.
    changed = [f"- **Settings besides the defaults: {settings_given}.**"] if plan.app_env else []
    return [
        "- Destination: one Refiner destination whose base URL is the delivery benchmark's fake "
        "Refiner on loopback (an asyncio HTTP/1.1 keep-alive server in its own process, "
        'answering `{"message":"ok"}` at once and counting requests). Its rate limit is lifted, '
        "so the replay's share of it (`REPLAY_RATE_SHARE` = "
        f"{settings.REPLAY_RATE_SHARE:g}) never holds it back; every other setting is the "
        f"default: `REPLAY_LANES` = {settings.REPLAY_LANES}, `REPLAY_PAGE` = "
        f"{settings.REPLAY_PAGE}, `DELIVERY_CONCURRENCY` = {settings.DELIVERY_CONCURRENCY}.",
        f"- Processes: from phase 2 on, `manage.py start --web-workers {plan.web_workers}` as "
        "production runs it (`LOG_LEVEL=WARNING`): migrations, then the web server (waitress "
        f"processes x {THREADS} threads), the delivery worker (`--queues <queue> --pool threads "
        f"--concurrency {workers.delivery_threads} --beat`) and the replay worker (`--queues "
        f"<queue>.replay --pool threads --concurrency {workers.replay_threads}`, niceness "
        f"{workers.replay_niceness}), all children of `start`, in one session: Linux shares "
        "the CPU fairly between sessions (autogroups), so a niceness counts only against "
        "processes of the same session; PostgreSQL, Redis and the fake Refiner run in "
        "sessions of their own.",
        f"- 1. History: {plan.events:,} events (3 `track` for each `identify`) from "
        f"{plan.users:,} users, timestamps spread evenly over the {HISTORY_DAYS} days before "
        f"the run, users interleaved (event n is user n x {USER_STRIDE} mod users: none has "
        f"more than {-(-plan.events // plan.users)} events, so Refiner's "
        "100 requests/minute per user never binds), stored through the app's ingest path "
        f"(`validate_message`, `store_messages`, {INSERT_CHUNK} a transaction) while no "
        "destination exists: nothing is planned. Its time is reported, not a target.",
        f"- 2. Live, the floor: the destination is created, {plan.live:,} live events (from "
        f"{USERS:,} users) stored with no worker running, then `manage.py start` run; "
        "deliveries/s = deliveries finished after the first / (last `finished_at` - first), "
        "as in the delivery benchmark.",
        "- 3. Replay: `services.start(destination, ReplayDefinition(until=now))` as the dashboard "
        "does: every history event (phase 2's are delivered already, so left out). "
        "Deliveries/s the same way over the replay's rows (`replay_id`). The replay worker's "
        "RSS (`VmRSS`) is sampled every second with the progress (delivered / total, from "
        "the job's counters): RSS at the first sample past 10 % and 50 %, at the end, and "
        "the largest. Verified: exactly one delivered row per history event and the fake "
        "Refiner received exactly one request per row.",
        "- 4. Latency while a replay runs: first the control, the live load below with no "
        "replay running; then a second replay of everything "
        "(`include_received=True`: the history and phase 2's events) is started, and "
        f"{RAMP_SECONDS:g} s after its first rows are "
        f"delivered, single-event `POST /v1/track` and `/v1/identify` (3:1) are offered "
        f"open-loop at {plan.rate:g} events/s for {plan.latency_seconds:g} s (the delivery "
        "benchmark's load, from an asyncio client in the bench process). Live received -> "
        "delivered is `finished_at - received_at` of the rows without a replay (`received_at` "
        "is taken in the ingest view: time a request waited before it is not in it; the "
        "ingest request's own latency, from its scheduled send time, is shown beside it, and "
        "the rate the server took the requests at); a delivery not finished "
        f"{DRAIN_SECONDS} s after the load counts as infinitely late. The replay's "
        "deliveries/s meanwhile: its rows delivered from the load's start to its last "
        "answer. The phase counts only if the replay was still running at the end of that "
        "window; it is then cancelled (`cancel_replay`). Verified: every request accepted "
        "and delivered, and the fake Refiner received live + replay deliveries exactly.",
        *changed,
        "- PostgreSQL: where the server has autovacuum off (this machine's has), the bench "
        "runs `ANALYZE` on the events, deliveries and profiles tables after each phase and "
        "every minute (autovacuum's default naptime), as autovacuum would have by then. The "
        "replay's selection query is planned from these statistics: on tables never analysed "
        "its first page took 8 s at 100,000 events.",
        "- Everything shares the 2 cores: workers, database, broker, web server, fake server "
        "and the bench. Cores busy are averages over the phase from `/proc`; "
        f"{SERVICES} is every PostgreSQL process (with the backends that exited meanwhile) "
        "and `redis-server`, whichever database they served; *other* is whatever else ran on "
        "the machine meanwhile (before phases 2 to 4 the script waits, at most 5 s, for the "
        "machine to be nearly idle). A worker's CPU per delivery is its CPU time over the "
        "phase (from the first delivery) / deliveries.",
    ]


Row = tuple[str, Callable[[BackendRun], str]]


def cores(cpu: dict[str, float], *names: str) -> str:
    return " / ".join(f"{cpu.get(name, 0.0):.2f}" for name in names)


def result_rows() -> list[Row]:
    def history(run: BackendRun) -> str:
        h = run.history
        return f"{h.stored:,} in {h.seconds:,.0f} s ({h.rate:,.0f}/s)"

    def live(run: BackendRun) -> str:
        span = run.live.span
        return f"**{span.rate:,.0f}** ({span.delivered:,} in {span.seconds:.1f} s)"

    def replay(run: BackendRun) -> str:
        span = run.replay.span
        return (
            f"**{span.rate:,.0f}** ({span.delivered:,} in {span.seconds:,.1f} s; the first "
            f"{run.replay.first_after_seconds:.1f} s after the job started)"
        )

    def memory(run: BackendRun) -> str:
        r = run.replay
        return (
            f"{r.idle_rss_mb:,.0f} / {r.rss_at(0.1):,.0f} / {r.rss_at(0.5):,.0f} / "
            f"{r.rss_at(1.0):,.0f} / {r.max_rss_mb:,.0f} MiB"
        )

    def loads(text: Callable[[LiveLoad], str]) -> Callable[[BackendRun], str]:
        """A phase 4 cell: the load while the replay runs, then without one."""

        def cell(run: BackendRun) -> str:
            if run.latency is None:
                return "not run"
            return f"{text(run.latency.load)}<br>without: {text(run.latency.control)}"

        return cell

    def percentiles(load: LiveLoad) -> str:
        return " / ".join(load.shown(f) for f in (0.5, 0.95, 0.99, 1))

    def requests_(load: LiveLoad) -> str:
        return (
            f"{load.requests:,} / {load.accepted:,} / {load.delivered:,}, taken at "
            f"{load.taken_rate:,.0f}/s"
        )

    def ingest(load: LiveLoad) -> str:
        return f"{load.ingest_ms(0.5):,.0f} / {load.ingest_ms(0.99):,.0f} ms"

    def load_cores(load: LiveLoad) -> str:
        names = ("web", "delivery worker", "replay worker", SERVICES, "other", "machine")
        return cores(load.cpu, *names)

    def replay_meanwhile(run: BackendRun) -> str:
        lat = run.latency
        if lat is None:
            return "not run"
        share = lat.replay_rate / run.replay.span.rate if run.replay.span.rate else 0.0
        return (
            f"{lat.replay_rate:,.0f}/s ({100 * share:.0f}% of phase 3), "
            f"{100 * lat.replay_progress_at_end:.0f}% of {lat.replay_total:,} done at the end"
            + ("" if lat.valid else " (**finished early**)")
        )

    def verified(run: BackendRun) -> str:
        problems = run.problems()
        return "yes" if not problems else "NO: " + ", ".join(problems)

    return [
        ("1. history stored (no destination)", history),
        ("2. live deliveries/s, the floor (first -> last)", live),
        ("2. delivery worker CPU per delivery", lambda r: f"{r.live.cpu_ms:.2f} ms"),
        (
            f"2. cores: delivery worker / {SERVICES} / fake Refiner / other / machine",
            lambda r: cores(
                r.live.cpu,
                "delivery worker",
                SERVICES,
                "fake Refiner",
                "other",
                "machine",
            ),
        ),
        ("3. replay deliveries/s (first -> last)", replay),
        ("3. replay / live", lambda r: f"{100 * r.share:.0f}%"),
        ("3. replay worker CPU per delivery", lambda r: f"{r.replay.cpu_ms:.2f} ms"),
        (
            f"3. cores: replay worker / delivery worker / {SERVICES} / fake Refiner / "
            "other / machine",
            lambda r: cores(
                r.replay.cpu,
                "replay worker",
                "delivery worker",
                SERVICES,
                "fake Refiner",
                "other",
                "machine",
            ),
        ),
        ("3. replay worker RSS: idle / 10% / 50% / 100% / max", memory),
        ("3. memory: RSS at 100% / at 10%", lambda r: f"{r.replay.memory_ratio:.2f}"),
        (
            "4. live received -> delivered p50 / p95 / p99 / max: while a replay runs, "
            "and without one",
            loads(percentiles),
        ),
        ("4. requests sent / accepted / delivered", loads(requests_)),
        ("4. ingest request p50 / p99 (from its scheduled send)", loads(ingest)),
        ("4. the replay meanwhile", replay_meanwhile),
        (
            f"4. cores: web / delivery worker / replay worker / {SERVICES} / other / machine",
            loads(load_cores),
        ),
        ("`ANALYZE` run by the bench", lambda r: f"{r.analyzed}"),
        ("verified", verified),
    ]


def markdown(runs: Sequence[BackendRun], plan: Plan) -> str:
    commit = command_output("git", "rev-parse", "--short", "HEAD")
    lines = [
        "### Method",
        "",
        *method_lines(plan),
        "",
        "### Machine",
        "",
        f"- Code: commit {commit}",
        *machine_lines([run.version for run in runs]),
        "",
        "### Results",
        "",
        "| | " + " | ".join(run.backend.title for run in runs) + " |",
        "|---|" + "--:|" * len(runs),
    ]
    for name, cell in result_rows():
        lines.append(f"| {name} | " + " | ".join(cell(run) for run in runs) + " |")
    lines += [
        "",
        "### Targets",
        "",
        "| target | " + " | ".join(run.backend.title for run in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    checks = [run.targets() for run in runs]
    for index, (name, _, _) in enumerate(checks[0]):
        cells = []
        for targets in checks:
            _, value, met = targets[index]
            word = "not run" if met is None else "met" if met else "**missed**"
            cells.append(value if met is None else f"{value} ({word})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Verdict: {verdict(runs)}"]
    return "\n".join(lines) + "\n"


def verdict(runs: Sequence[BackendRun]) -> str:
    """One sentence: which targets were missed where, or that all were met."""
    missed = [
        f"{name} ({run.backend.title})"
        for run in runs
        for name, _, met in run.targets()
        if met is False
    ]
    unverified = [run.backend.title for run in runs if run.problems()]
    text = (
        "Every target met on every backend." if not missed else "Missed: " + "; ".join(missed) + "."
    )
    if unverified:
        text += " Not verified (numbers not to be trusted): " + ", ".join(unverified) + "."
    return text

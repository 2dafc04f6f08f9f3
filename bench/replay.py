"""Replay benchmark: stored history sent again to a Refiner destination, against live delivery
measured in the same run, and live latency while a replay runs.

Run from the repository root::

    uv run python bench/replay.py                   # 1,000,000 events, PostgreSQL then SQLite
    uv run python bench/replay.py --write-docs      # the same, then rewrite its section of
                                                    # docs/benchmarks.md
    uv run python bench/replay.py --db sqlite       # one backend
    uv run python bench/replay.py --quick           # 20,000 events: a smoke test
    uv run python bench/replay.py --quick --events 50000
    uv run --with py-spy python bench/replay.py --quick --profile /tmp/replay-profile

Everything runs on loopback, against the delivery benchmark's fake Refiner (its own process,
for the whole run). For each backend the script makes a fresh database (PostgreSQL: a
``switchboard_bench_replay`` database, Redis db 7 as the Celery broker and db 8 as
``CACHE_URL``; SQLite: the embedded default, SQLite plus the file-system broker in a temporary
``SWITCHBOARD_DATA_DIR``) and runs, in turn on it:

1. history: ``--events`` events (identify and track, from enough users that Refiner's 100
   requests a minute per user never binds, timestamped over the last 30 days, users
   interleaved) stored through the app's ingest path (``validate_message``,
   ``store_messages``) while no destination exists, so nothing is planned; its time is
   reported;
2. live throughput, the floor: the Refiner destination is created (base URL the fake, rate
   limit lifted), ``--live`` live events stored with no worker running, then the delivery
   worker started as ``manage.py start`` runs it (one process, ``--pool threads
   --concurrency 4``, the default queue, ``--beat``); deliveries/s from the first
   ``finished_at`` to the last;
3. replay throughput: the replay worker started as ``start`` runs it (one process, threads,
   concurrency 2, the replay queue, ``nice`` 10; the delivery worker keeps running) and a
   replay of the history started (``services.start``); its deliveries/s the same way, which
   must be at least 80 % of phase 2's, and the replay worker's RSS sampled every second (at
   10 %, 50 %, 100 % of the replay, and the largest: flat is 100 % within +20 % of 10 %).
   Verified: one delivered row per history event, one request each at the fake;
4. live latency during a replay: the web server as ``manage.py start --no-worker`` runs it,
   a second replay of everything (``include_received=True``) started, and once it delivers,
   single-event ``POST /v1/track`` (and ``/v1/identify``) offered open-loop at ``--rate``
   (200) events/s for ``--latency-seconds`` (30; quick 10); p50/p95/p99 of live
   ``finished_at - received_at`` (target: p95 under 1 s) and the replay's deliveries/s
   meanwhile. Valid only if the replay was still running when the load ended; it is then
   cancelled.

``--profile DIR`` samples the delivery worker in phase 2, the replay worker in phase 3 and
both in phase 4 with py-spy and prints the heaviest functions (sampling slows them: profiled
numbers are not the benchmark's). ``--keep DIR`` keeps each backend's data directory and the
worker and server logs.

This file is the entry point; the parts are in ``bench/replay_bench/`` (its ``__init__``
lists them).
"""

from __future__ import annotations

import sys

from replay_bench.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], (__doc__ or "").split("\n", 1)[0]))

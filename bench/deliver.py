"""Delivery benchmark: how fast stored events reach a Refiner destination, and how soon.

Run from the repository root::

    uv run python bench/deliver.py                  # PostgreSQL, then SQLite: about 9 minutes
    uv run python bench/deliver.py --write-docs     # the same, then rewrite its section of
                                                    # docs/benchmarks.md
    uv run python bench/deliver.py --db postgres    # one backend
    uv run python bench/deliver.py --quick          # small numbers, one config: a smoke test
    uv run python bench/deliver.py --configs threads:1x4x16,prefork:1x2x16
    uv run --with py-spy python bench/deliver.py --db postgres --profile /tmp/deliver-profile

Everything runs on loopback. A fake Refiner (a minimal asyncio HTTP/1.1 keep-alive server
answering ``{"message":"ok"}``) runs in its own process for the whole run. For each backend the
script makes a fresh database (PostgreSQL: a ``switchboard_bench_deliver`` database, Redis db 5
as the Celery broker and db 6 as ``CACHE_URL``; SQLite: the embedded default, SQLite plus the
file-system broker in a temporary ``SWITCHBOARD_DATA_DIR``), migrates it, creates a source and a
Refiner destination pointing at the fake server (its rate limit lifted: the real Refiner allows
4,000 requests a minute per key) and runs:

1. throughput, per worker config: N events are stored through the app's own ingest path
   (``validate_message`` then ``store_messages``, which plans the deliveries and enqueues one
   ``destinations.deliver`` task per 100 of them on commit) with no worker running; then the
   worker processes are started (``celery -A dashboard worker``, the first with ``--beat`` so
   the sweeper runs as in production) and the database is polled until every delivery is
   finished. Deliveries/s counts from the first ``finished_at`` to the last;
2. the ceiling, once per concurrency shape: the same number of processes, each with the same
   number of threads, each thread a ``requests.Session`` POSTing Refiner-like bodies to the fake
   server in a loop. Our throughput is reported as a share of it;
3. latency under load: the web server started as production does (``manage.py start
   --no-worker``: the waitress processes of ``dashboard/project/webserver.py``, the scale-out form)
   plus the workers of ``--latency-config`` (``threads:2x2x16``: the threads pool ``start``
   runs, in two processes; ``best``: the best throughput config's); single-event
   ``POST /v1/track`` and ``/v1/identify`` offered open-loop at a fixed rate; then the
   percentiles of ``Delivery.finished_at - Delivery.received_at``.

Every phase is verified: all deliveries ``delivered``, and the fake server received exactly one
request per delivery. A worker config is ``POOL:PROCESSESxCONCURRENCYxDELIVERY_CONCURRENCY``:
``threads:1x4x16`` is one ``--pool threads --concurrency 4`` worker process with
``DELIVERY_CONCURRENCY=16``; ``prefork:1x2x16`` is one prefork worker with two child processes.

``--profile DIR`` samples the worker processes of every throughput run and of the latency phase
with py-spy (``--gil``: the thread holding the GIL, i.e. where CPU time goes) and prints the
heaviest functions; sampling slows the workers, so profiled numbers are not the benchmark's.
``--keep DIR`` keeps each backend's data directory and the worker and server logs.

This file is the entry point; the parts are in ``bench/deliver_bench/`` (its ``__init__`` lists
them).
"""

from __future__ import annotations

import sys

from deliver_bench.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], (__doc__ or "").split("\n", 1)[0]))

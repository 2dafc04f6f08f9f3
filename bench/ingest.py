"""Ingest benchmark: how many Segment events per second Switchboard accepts, and how fast.

Run from the repository root::

    uv run python bench/ingest.py                   # SQLite, then PostgreSQL: about 3 minutes
    uv run python bench/ingest.py --write-docs      # the same, then rewrite docs/benchmarks.md
    uv run python bench/ingest.py --db postgres     # one backend
    uv run python bench/ingest.py --quick           # short phases: a smoke test
    uv run --with py-spy python bench/ingest.py --db postgres --profile /tmp/ingest-profile

For each backend the script makes a fresh database (a temporary ``SWITCHBOARD_DATA_DIR`` for
the embedded SQLite default; a ``switchboard_bench`` database plus Redis as the cache for
PostgreSQL), starts the server with ``manage.py start`` as production does (migrations, then
the web server processes of ``dashboard/project/webserver.py``, and the Celery delivery worker, idle
here: no destinations) on a free loopback port, creates a source, lifts its rate limit and
runs these phases in turn:

s. seed: one batched event for each of the USERS user ids, so that every profile exists and
   the measured phases take the steady-state path (events from known users);
a. POST /v1/track, one event per request, closed loop: N connections, each sending its next
   request as soon as the previous answer arrived. Events/s and latency p50/p99;
b. POST /v1/batch with 100 events per request, closed loop: events/s, latency per request;
c. POST /v1/track offered at a fixed rate, open loop: request i is sent at start + i / rate
   whatever happened to the earlier ones, and its latency counts from that scheduled time, so a
   stalled server cannot hide its queue;
d. the ceiling, with the server stopped: phase b's rows (new messageIds) inserted straight into
   the events table by one connection, 100 rows per transaction: a plain multi-row INSERT (an
   ``executemany`` on SQLite), and COPY on PostgreSQL.

The load generator is an asyncio HTTP/1.1 client in this process, separate from the server's
processes but sharing the machine's cores with them; the CPU each side used is printed, and
what other processes used. The machine may be shared, so before each phase the script waits
(up to 30 s) for them to go quiet. After each phase the rows are counted by messageId prefix
and must match what was sent and what the answers reported. The server is stopped and the
bench database dropped whatever happens.

``--profile DIR`` samples the web server processes with py-spy (``--gil``: only the thread running
Python, so the samples show where CPU time goes) and prints the heaviest application functions;
sampling slows the server, so profiled numbers are not the benchmark's.

This file is the entry point; the parts are in ``bench/ingest_bench/`` (its ``__init__`` lists
them).
"""

from __future__ import annotations

import sys

from ingest_bench.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], (__doc__ or "").split("\n", 1)[0]))

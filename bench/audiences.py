"""Audiences benchmark: the first computation, the window pass and what live audiences cost
ingest.

Run from the repository root, with nothing else busy on the machine::

    uv run python bench/audiences.py                  # SQLite, then PostgreSQL, full size
    uv run python bench/audiences.py --write-docs     # the same, then rewrite its section of
                                                      # docs/benchmarks.md
    uv run python bench/audiences.py --db postgres    # one backend
    uv run python bench/audiences.py --quick          # 10x smaller: a smoke test (never
                                                      # written to the docs)
    uv run python bench/audiences.py --db sqlite --quick --profile /tmp/audiences-profile

Targets, on this 2-core machine: (1) the first computation of an event-count audience
("performed 'Report Exported' at least 3 times in the last 7 days" and a trait condition) over
1,000,000 events and 100,000 users in under 30 s, its memory flat in the number of events
(compared with the same users and 250,000 events); (2) the periodic window pass over an
audience of 100,000 members in under 10 s; (3) with 10 live audiences, ingest costs the web
server at most 15 % more CPU per event than with none.

For each backend the script makes a fresh database (SQLite: the embedded default in a
temporary ``SWITCHBOARD_DATA_DIR``, with the file-system broker; PostgreSQL: a
``switchboard_bench_audiences`` database, Redis db 9 as the broker under its own queue name
and db 10 as ``CACHE_URL``), migrates it and runs, each Django part in a child process of its
own (``audiences.py ROLE JSON``):

1. setup: a source for the ingest phase (no rate limit) and a Refiner destination at its
   default address (nothing is sent: no worker runs);
2. the users and the small history written in bulk (``executemany`` / ``COPY``), then two
   first computations, timed in the role's process: without a destination (no syncs stored)
   and with the Refiner destination targeted (syncs stored, deliveries planned), each after
   its floor (the plain ``GROUP BY`` the engine cannot beat) and checked against it;
3. the history grown to the full size, and the two first computations again;
4. the window pass over an audience every user is in: at now (nothing changes) and at now +
   3 days (a share leaves, each synced);
5. the 10 live audiences (every kind of condition) created and computed; then the web server
   (``manage.py start --no-worker``) and A/B rounds of single-event and batch requests, without
   and with live audiences, CPU per event of the web processes from /proc;
6. the worker side, for scale: ``live.reevaluate`` of a task's worth of touched users.

Every phase is verified (members against the floor, syncs stored, rows stored, tasks sent).
The database is dropped and the queue purged whatever happens. ``--profile DIR`` writes a
cProfile of each timed call and prints its heaviest functions; profiled numbers are not the
benchmark's.

This file is the entry point; the parts are in ``bench/audiences_bench/`` (its ``__init__``
lists them).
"""

from __future__ import annotations

import sys

from audiences_bench.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], (__doc__ or "").split("\n", 1)[0]))

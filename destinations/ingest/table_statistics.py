"""PostgreSQL's statistics of the events table, kept up with a table that grows fast.

The planner chooses by statistics that ``ANALYZE`` takes, and autovacuum takes them again once
a tenth of the table has changed, looking at most once a minute. A table that grows from
nothing to hundreds of thousands of events within minutes (a new installation's first
import; every benchmark) is meanwhile planned for the size it had: with statistics that said
a source had a few events, ingest's messageId check (100 messageIds, ``source_id = %s AND
message_id = ...``) walked every event of the source through the (source, id) index instead of
probing the (source, messageId) unique index: 7 ms instead of 0.7 ms at 30,000 events, and
growing with the table. No way of writing the query made the planner prefer the unique index
while the statistics were stale; tests/ingest/test_table_statistics.py builds that table and
checks the plan once its statistics are refreshed.

So each process counts the events it stores and, every ``CHECK_EVERY_EVENTS``, asks how many
rows changed since the last ``ANALYZE``; past the number of rows the statistics describe (the
table has more than doubled since), it runs ``ANALYZE destinations_event`` on a thread and a
connection of its own, off the ingest path. That happens about log2(final size) times in the
table's life; afterwards autovacuum's tenth is the smaller step and this never fires.
"""

from __future__ import annotations

import logging
import os
import threading

from django.db import DatabaseError, connection

from destinations.models import Event

logger = logging.getLogger(__name__)

CHECK_EVERY_EVENTS = 2000
# Below this many changed rows the statistics are left to autovacuum.
MIN_CHANGED_ROWS = 1000


class StatisticsKeeper:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since_check = 0
        self.thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self.reset_after_fork)

    def reset_after_fork(self) -> None:
        self.lock = threading.Lock()
        self.since_check = 0
        self.thread = None

    def events_stored(self, count: int) -> None:
        """Count ``count`` events stored by this process (PostgreSQL only, after commit)."""
        with self.lock:
            self.since_check += count
            if self.since_check < CHECK_EVERY_EVENTS:
                return
            if self.thread is not None and self.thread.is_alive():
                return
            self.since_check = 0
            self.thread = threading.Thread(
                target=self.refresh, name="events-statistics", daemon=True
            )
            self.thread.start()

    def refresh(self) -> None:
        """On a connection of this thread's own: ANALYZE the events if they are stale."""
        table = Event._meta.db_table
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT greatest(class.reltuples, 0), stats.n_mod_since_analyze"
                    " FROM pg_class AS class JOIN pg_stat_user_tables AS stats"
                    " ON stats.relid = class.oid WHERE class.oid = CAST(%s AS regclass)",
                    [table],
                )
                row = cursor.fetchone()
                if row is not None and stale(described=row[0], changed=row[1]):
                    cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
        except DatabaseError as error:
            logger.warning("could not refresh the events' statistics: %s", error)
        finally:
            connection.close()

    def wait(self, timeout: float = 30.0) -> None:
        """For tests: until a refresh that was started has finished."""
        thread = self.thread
        if thread is not None:
            thread.join(timeout)


def stale(*, described: float, changed: int) -> bool:
    """More rows changed since the last ANALYZE than its statistics describe."""
    return changed >= MIN_CHANGED_ROWS and changed > described


keeper = StatisticsKeeper()

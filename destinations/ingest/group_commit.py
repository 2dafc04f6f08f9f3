"""Group commit: the ingest requests of a web process share their database transactions.

A request validates its messages on its own thread, hands them to the process's writer and
waits. A writer thread takes every write waiting when it comes round (none is held back for others
to arrive, so a lone request is not slowed), stores them in one transaction and wakes each
request with its own counts once that transaction has committed: a 200 still means durable.
A request's refused items never reach the writer, so one request's bad input cannot fail
another's; if the shared transaction fails all the same (a database error), each request of it
is stored again on its own, and only the ones that fail again get the error.

Merging requests turns a dozen single-event transactions into one: one messageId check, one
identity resolution and one INSERT for them all, and on SQLite one writer per process where a
dozen threads used to wait on the database's lock (docs/decisions/0029-ingest-path.md). The
writer has one thread unless ``INGEST_WRITERS`` asks for more. Where ``start`` runs the ingest
writer process (SQLite), a group of ``LINK_MIN_MESSAGES`` or more is stored there instead
(destinations/ingest/writer_link.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from destinations.identity.suppression import without_suppressed
from destinations.ingest.store import (
    RefusedMessage,
    StoreResult,
    record_refusals,
    store_unique,
)
from destinations.ingest.writer_turns import writers_take_turns
from destinations.messages.message import Message

logger = logging.getLogger(__name__)

# A writer with nothing to do for this long closes its database connection.
IDLE_SECONDS = 1.0
# While other ingest requests of the process are still being read and validated, the writer
# waits up to GATHER_SECONDS for them to share its transaction (RudderStack's gateway waits up
# to 15 ms). When none is on its way it starts at once: a lone request is never held back.
GATHER_SECONDS = 0.002
# Groups of at least this many messages go to the writer process, where there is one.
LINK_MIN_MESSAGES = 50


@dataclass(eq=False)
class PendingWrite:
    """One request's accepted messages (and refused items, recorded in the same transaction),
    and, once the writer is done with it, its result or its error."""

    source_id: int
    messages: Sequence[Message]
    received_at: datetime
    demo: bool = False
    refused: Sequence[RefusedMessage] = ()
    endpoint: str = ""
    # Set when the writer is done with it, for a request that waits (``store``); one that does
    # not (``store_later``) has none: an Event is a lock and a condition to make, 7 % of the
    # CPU samples of the single-event benchmark when every write had one.
    done: threading.Event | None = None
    result: StoreResult | None = None
    error: BaseException | None = None
    # Called on the writer's thread once ``result`` or ``error`` is set (``store_later``).
    on_done: Callable[[PendingWrite], None] | None = None


class Link(Protocol):
    """The way to the writer process (destinations/ingest/writer_link.py)."""

    broken: bool

    def commit(self, group: Sequence[PendingWrite]) -> None: ...


class WriterTimeout(Exception):
    """The writer did not answer in time; the request's messages may still be stored."""


def store_writes(writes: Sequence[PendingWrite]) -> list[StoreResult]:
    """Store several requests' messages in the caller's transaction, each with its own counts:
    a messageId sent twice is stored once and counted as stored for the first request carrying
    it, as a duplicate for the others."""
    results: dict[int, StoreResult] = {}
    by_source: dict[tuple[int, bool], list[PendingWrite]] = {}
    for write in writes:
        if write.refused:
            record_refusals(
                write.source_id,
                write.refused,
                endpoint=write.endpoint,
                received_at=write.received_at,
            )
        if write.messages:
            by_source.setdefault((write.source_id, write.demo), []).append(write)
        else:
            results[id(write)] = StoreResult(stored=0, duplicates=0)  # a refusal, listed
    for (source_id, demo), group in by_source.items():
        kept, _ = without_suppressed([m for write in group for m in write.messages])
        kept_ids = {id(m) for m in kept}
        first: dict[str, tuple[Message, PendingWrite]] = {}
        for write in group:
            for message in write.messages:
                if id(message) in kept_ids:
                    first.setdefault(message.message_id, (message, write))
        stored_ids = store_unique(
            source_id,
            [message for message, _ in first.values()],
            [write.received_at for _, write in first.values()],
            demo=demo,
        )
        stored_by = Counter(id(write) for mid, (_, write) in first.items() if mid in stored_ids)
        for write in group:
            kept_here = sum(1 for m in write.messages if id(m) in kept_ids)
            stored = stored_by[id(write)]
            results[id(write)] = StoreResult(
                stored=stored,
                duplicates=kept_here - stored,
                suppressed=len(write.messages) - kept_here,
            )
    return [results[id(write)] for write in writes]


class GroupWriter:
    """The process's writer threads and the queue of writes waiting for them."""

    def __init__(self, max_messages: int, threads: int = 1) -> None:
        self.max_messages = max_messages
        self.threads_wanted = threads
        self.pending: deque[PendingWrite] = deque()
        self.ready = threading.Condition()
        self.threads: list[threading.Thread] = []
        # Requests inside the ingest view that have not handed their write over yet (or ended
        # without one): the writes on their way.
        self.arriving = 0
        self.local = threading.local()
        # Set in a web process whose groups the writer process stores (``use_link``).
        self.link: Link | None = None
        os.register_at_fork(after_in_child=self.reset_after_fork)

    def store(self, write: PendingWrite, timeout: float) -> StoreResult:
        """Queue ``write``, wait until its transaction has committed (or failed) and return its
        counts (or raise its error)."""
        done = write.done = threading.Event()
        with self.ready:
            self.start_if_needed()
            self.pending.append(write)
            self.no_longer_arriving()
            self.ready.notify()
        if not done.wait(timeout):
            raise WriterTimeout(f"the writer did not answer within {timeout:g} s")
        if write.error is not None:
            raise write.error
        assert write.result is not None
        return write.result

    def submit(self, writes: Sequence[PendingWrite]) -> None:
        """Queue ``writes`` without waiting: each one's ``on_done`` is called once it is
        stored."""
        with self.ready:
            self.start_if_needed()
            self.pending.extend(writes)
            self.ready.notify()

    def withdraw_refusals(self, write: PendingWrite) -> bool:
        """Drop ``write``'s refused items if no writer has taken it yet (see
        ``withdraw_refusals`` below); whether they were dropped."""
        with self.ready:
            if any(waiting is write for waiting in self.pending):
                write.refused = ()
                return True
        return False

    def start_if_needed(self) -> None:
        """Start the writer threads this process lacks. Each has its own database connection,
        so with two a group's transaction is prepared while another's commit is being made
        durable."""
        self.threads = [thread for thread in self.threads if thread.is_alive()]
        while len(self.threads) < self.threads_wanted:
            name = f"ingest-writer-{len(self.threads) + 1}"
            thread = threading.Thread(target=self.run, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def reset_after_fork(self) -> None:
        # A forked child inherits the parent's queue, counts and maybe a held lock, but not its
        # threads or its requests: it starts its own.
        self.pending = deque()
        self.ready = threading.Condition()
        self.arriving = 0
        self.local = threading.local()
        self.threads = []
        self.link = None

    def take(self) -> list[PendingWrite]:
        """Every write waiting, up to ``max_messages`` messages (at least one write)."""
        with self.ready:
            while True:
                while not self.pending:
                    if not self.ready.wait(IDLE_SECONDS) and not self.pending:
                        # Idle: give the connection back (a quiet process holds none, and a
                        # test database can be dropped); the next write opens one again.
                        connection.close()
                self.gather()
                # Another writer thread may have taken everything while this one gathered.
                if self.pending:
                    break
            group = [self.pending.popleft()]
            count = len(group[0].messages)
            while self.pending and count + len(self.pending[0].messages) <= self.max_messages:
                write = self.pending.popleft()
                count += len(write.messages)
                group.append(write)
            return group

    def gather(self) -> None:
        """While requests are still being read and validated, wait (at most GATHER_SECONDS) for
        them to join this transaction instead of each paying for one of their own."""
        deadline = time.monotonic() + GATHER_SECONDS
        while self.arriving > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.ready.wait(left)

    @contextlib.contextmanager
    def expecting_write(self) -> Iterator[None]:
        """Count the calling request among the writes on their way until it hands its write
        over (``store``) or ends without one."""
        with self.ready:
            self.arriving += 1
            self.local.arriving = True
        try:
            yield
        finally:
            with self.ready:
                if self.no_longer_arriving():
                    self.ready.notify_all()  # a writer waiting for it need not wait longer

    def no_longer_arriving(self) -> bool:
        """Uncount the calling request if it was counted (call holding ``ready``)."""
        if not getattr(self.local, "arriving", False):
            return False
        self.local.arriving = False
        self.arriving -= 1
        return True

    def run(self) -> None:
        while True:
            group = self.take()
            try:
                self.commit(group)
            except BaseException as error:
                logger.exception("ingest writer: unexpected failure")
                for write in group:
                    write.error = write.error or error
            finally:
                for write in group:
                    if write.done is not None:
                        write.done.set()
                    if write.on_done is not None:
                        try:
                            write.on_done(write)
                        except Exception:
                            logger.exception("ingest writer: a request's callback failed")

    def commit(self, group: list[PendingWrite]) -> None:
        link = self.link
        if link is not None and not link.broken and shipped(group):
            try:
                link.commit(group)
                return
            except OSError as error:
                # Whether the writer process stored the group before it went is not known:
                # stored here again, each messageId is kept once all the same.
                logger.error("ingest writer: the writer process is gone (%s); storing here", error)
                for write in group:
                    write.result = write.error = None
        commit_here(group, alone=lambda write: self.commit([write]))


def shipped(group: Sequence[PendingWrite]) -> bool:
    """Whether a group is worth sending to the writer process: one of at least
    ``LINK_MIN_MESSAGES`` messages. A small group (a few single events) costs more to send
    and answer than the writer process saves; a large one is stored there while this process's
    event loop validates the next request, instead of the two taking turns on its GIL."""
    return sum(len(write.messages) for write in group) >= LINK_MIN_MESSAGES


def commit_here(
    group: list[PendingWrite], alone: Callable[[PendingWrite], None] | None = None
) -> None:
    """Store ``group`` in one transaction of this process, setting each write's result; if
    that fails, each write alone (by ``alone``, by default this function), setting the error of
    those that fail again."""
    try:
        with writers_take_turns(), transaction.atomic():
            results = store_writes(group)
    except Exception as error:
        discard_broken_connection(error)
        if len(group) == 1:
            group[0].error = error
            return
        logger.warning("ingest writer: a group of %d failed, storing each alone", len(group))
        for write in group:
            if alone is None:
                commit_here([write])
            else:
                alone(write)
        return
    for write, result in zip(group, results, strict=True):
        write.result = result


def discard_broken_connection(error: Exception) -> None:
    """After a database error the connection may be dead (a restarted server): close it, so
    the next transaction opens a new one instead of failing the same way."""
    if isinstance(error, DatabaseError):
        with contextlib.suppress(DatabaseError):
            connection.close()


def writer_threads() -> int:
    """``INGEST_WRITERS``, or by database: SQLite takes one writer at a time, so a second
    thread would only wait for its lock; PostgreSQL commits several transactions at once, and
    a commit there waits for the disk (about 10 ms on the benchmark machine) while the other
    writer works."""
    if settings.INGEST_WRITERS > 0:
        return int(settings.INGEST_WRITERS)
    # Two on PostgreSQL collapsed under 500 requests/s in bench/ingest.py (126/s taken, p99
    # 92 s) where one held 496/s: one each until that is understood.
    return 1


_writer = GroupWriter(max_messages=1)


def store_accepted(write: PendingWrite) -> StoreResult:
    """Store a request's messages through the process's writers; inline when group commit is
    off, or when the caller is already in a transaction (its own work must see the rows)."""
    if not settings.INGEST_GROUP_COMMIT or connection.in_atomic_block:
        with transaction.atomic():
            return store_writes([write])[0]
    _writer.max_messages = settings.INGEST_GROUP_MAX_MESSAGES
    _writer.threads_wanted = writer_threads()
    return _writer.store(write, timeout=settings.INGEST_WRITER_TIMEOUT_SECONDS)


def group_commit_on() -> bool:
    return bool(settings.INGEST_GROUP_COMMIT)


def store_later(writes: Sequence[PendingWrite]) -> None:
    """Hand ``writes`` to the process's writers and return at once; each one's ``on_done`` is
    called on a writer's thread when its transaction has committed (``write.result``) or
    failed (``write.error``). For callers that must not wait: the web server's event loop."""
    _writer.max_messages = settings.INGEST_GROUP_MAX_MESSAGES
    _writer.threads_wanted = writer_threads()
    _writer.submit(writes)


def expecting_write() -> contextlib.AbstractContextManager[None]:
    """Around an ingest request: while it is read and validated, the process's writer may wait
    a moment for its write rather than commit without it."""
    return _writer.expecting_write()


def use_link(link: Link) -> None:
    """This process's groups go through ``link`` to the writer process."""
    _writer.link = link


def withdraw_refusals(write: PendingWrite) -> bool:
    """``write``'s request was answered 503 (its writer did not answer in time), and the SDK
    will send it again, refused items and all: if no writer has taken it yet, its refused items
    are left for the retry to list, so the source's page lists them once. Its messages are still
    stored when the writer gets to them; the retry finds them there. Whether they were dropped."""
    return _writer.withdraw_refusals(write)

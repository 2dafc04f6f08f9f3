"""Group commit: several requests' messages stored in one transaction by the process's writer
thread, each request answered with its own counts; a request whose write fails at the database
fails alone, and one the writer cannot answer in time is told to retry.

``store_writes`` is tested inside the test's transaction. The writer is a real thread with a
connection of its own, so its tests use ``transaction=True``: it sees only committed rows.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.test import Client
from django.utils import timezone

from destinations.identity.suppression import forget_cached_suppressions
from destinations.ingest import group_commit, writer_turns
from destinations.ingest.auth import forget_cached_sources
from destinations.ingest.group_commit import (
    IDLE_SECONDS,
    PendingWrite,
    WriterTimeout,
    store_accepted,
    store_writes,
    writer_threads,
)
from destinations.ingest.store import RefusedMessage, StoreResult
from destinations.models import (
    Delivery,
    Destination,
    Event,
    IngestFailure,
    Source,
    Suppression,
    SuppressionKind,
)
from destinations.sources import source_create
from tests.helpers.group_commit import (
    RecordingWriter,
    pending_write,
    store_from_threads,
    track_message,
)
from tests.helpers.ingest import basic
from tests.helpers.worker import wait_until


def stored_ids(source: Source) -> set[str]:
    return set(Event.objects.filter(source=source).values_list("message_id", flat=True))


def stored(count: int) -> StoreResult:
    return StoreResult(stored=count, duplicates=0)


# --- store_writes: one transaction, each request's own counts ---------------------------------


@pytest.mark.django_db
def test_a_message_id_in_two_requests_is_stored_once_and_counted_for_the_first(
    source: Source,
) -> None:
    first_at = timezone.now() - timedelta(seconds=5)
    first = pending_write(source.pk, ["a", "shared"], event="First", received_at=first_at)
    second = pending_write(source.pk, ["shared", "b"], event="Second")
    only_the_shared_one = pending_write(source.pk, ["shared"], event="Third")
    twice_in_itself = pending_write(source.pk, ["c", "c"])
    with transaction.atomic():
        results = store_writes([first, second, only_the_shared_one, twice_in_itself])
    assert results == [
        StoreResult(stored=2, duplicates=0),
        StoreResult(stored=1, duplicates=1),
        StoreResult(stored=0, duplicates=1),
        StoreResult(stored=1, duplicates=1),
    ]
    assert stored_ids(source) == {"a", "shared", "b", "c"}
    # The row is the first request's message, received when that request was.
    shared = Event.objects.get(source=source, message_id="shared")
    assert (shared.event, shared.received_at) == ("First", first_at)


@pytest.mark.django_db
def test_a_request_whose_messages_are_all_stored_already_gets_duplicates(source: Source) -> None:
    with transaction.atomic():
        assert store_writes([pending_write(source.pk, ["m1", "m2"])]) == [stored(2)]
    retried = pending_write(source.pk, ["m1", "m2"])  # an SDK's retry of the same batch
    fresh = pending_write(source.pk, ["m3"])
    with transaction.atomic():
        results = store_writes([retried, fresh])
    assert results == [StoreResult(stored=0, duplicates=2), stored(1)]
    assert stored_ids(source) == {"m1", "m2", "m3"}


class Abandoned(Exception):
    """Raised to roll a transaction back."""


@pytest.mark.django_db
def test_refused_items_are_recorded_in_the_same_transaction(source: Source) -> None:
    at = timezone.now() - timedelta(seconds=1)
    refused = [RefusedMessage(index=1, reason="event is missing", excerpt='{"type":"track"}')]
    with_refusals = pending_write(source.pk, ["ok-1"], refused=refused, received_at=at)
    without = pending_write(source.pk, ["ok-2"])

    with pytest.raises(Abandoned), transaction.atomic():
        store_writes([with_refusals, without])
        assert IngestFailure.objects.count() == 1
        raise Abandoned
    # Rolled back with the events: a retried request does not record its refusals twice.
    assert IngestFailure.objects.count() == 0
    assert stored_ids(source) == set()

    with transaction.atomic():
        assert store_writes([with_refusals, without]) == [stored(1), stored(1)]
    failure = IngestFailure.objects.get()
    assert (failure.source_id, failure.endpoint, failure.batch_index) == (source.pk, "batch", 1)
    assert (failure.reason, failure.excerpt) == ("event is missing", '{"type":"track"}')
    assert failure.received_at == at
    assert stored_ids(source) == {"ok-1", "ok-2"}


@pytest.mark.django_db
def test_two_sources_in_one_group_keep_their_message_ids_apart(source: Source) -> None:
    other = source_create(name="Mobile app")
    with transaction.atomic():
        results = store_writes(
            [
                pending_write(source.pk, ["m1", "m2"]),
                pending_write(other.pk, ["m1"]),
                pending_write(source.pk, ["m2"]),
                pending_write(other.pk, ["m1", "m3"]),
            ]
        )
    assert results == [
        stored(2),
        stored(1),
        StoreResult(stored=0, duplicates=1),
        StoreResult(stored=1, duplicates=1),
    ]
    assert stored_ids(source) == {"m1", "m2"}
    assert stored_ids(other) == {"m1", "m3"}


@pytest.mark.django_db
def test_demo_data_goes_to_demo_destinations_only_even_in_a_shared_group(source: Source) -> None:
    demo_source = Source.objects.create(name="Demo source", demo=True)
    url = {"url": "http://127.0.0.1:9/hook"}
    Destination.objects.create(kind="webhook", name="Real hook", settings=url)
    Destination.objects.create(kind="webhook", name="Demo hook", settings=url, demo=True)
    with transaction.atomic():
        results = store_writes(
            [
                pending_write(demo_source.pk, ["d1"], demo=True),
                pending_write(source.pk, ["r1"]),
                pending_write(demo_source.pk, ["d2"], demo=True),
            ]
        )
    assert results == [stored(1), stored(1), stored(1)]
    routed = set(Delivery.objects.values_list("event__message_id", "destination__name"))
    assert routed == {
        ("d1", "Demo hook"),
        ("d2", "Demo hook"),
        ("r1", "Real hook"),
        ("r1", "Demo hook"),
    }


@pytest.mark.django_db
def test_suppression_is_decided_per_message(source: Source) -> None:
    Suppression.objects.create(kind=SuppressionKind.USER_ID, value="deleted-user")
    forget_cached_suppressions()
    at = timezone.now()
    mixed = PendingWrite(
        source_id=source.pk,
        messages=[
            track_message("kept-1", received_at=at),
            track_message("gone-1", user_id="deleted-user", received_at=at),
        ],
        received_at=at,
    )
    all_gone = pending_write(source.pk, ["gone-2"], user_id="deleted-user")
    with transaction.atomic():
        results = store_writes([mixed, all_gone])
    assert results == [
        StoreResult(stored=1, duplicates=0, suppressed=1),
        StoreResult(stored=0, duplicates=0, suppressed=1),
    ]
    assert stored_ids(source) == {"kept-1"}


# --- the writer thread --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_share_transactions_and_each_gets_its_own_counts(
    source: Source,
) -> None:
    writer = RecordingWriter()
    threads, writes_each = 16, 4
    start_together = threading.Barrier(threads)

    def request_thread(thread: int) -> list[tuple[int, StoreResult]]:
        start_together.wait()
        answers = []
        for number in range(writes_each):
            ids = [f"t{thread}-w{number}-m{k}" for k in range((thread + number) % 3 + 1)]
            answers.append((len(ids), writer.store(pending_write(source.pk, ids), timeout=30)))
        return answers

    with ThreadPoolExecutor(threads) as pool:
        answers = [answer for each in pool.map(request_thread, range(threads)) for answer in each]

    assert [result for _, result in answers] == [stored(sent) for sent, _ in answers]
    assert Event.objects.filter(source=source).count() == sum(sent for sent, _ in answers)
    assert sum(writer.taken) == threads * writes_each
    assert max(writer.taken) > 1, f"every group held one write: {writer.taken}"
    assert writer.committed == writer.taken  # no group failed


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_carrying_the_same_message_ids_store_each_once(
    source: Source,
) -> None:
    shared = ["s1", "s2", "s3", "s4", "s5"]
    writes = [pending_write(source.pk, [*shared, f"own-{i}"]) for i in range(16)]
    results = store_from_threads(RecordingWriter(), writes)
    counts = [r for r in results if isinstance(r, StoreResult)]
    assert len(counts) == 16, results
    assert all(r.stored + r.duplicates == 6 and r.stored >= 1 for r in counts), counts
    assert sum(r.stored for r in counts) == len(shared) + 16
    assert stored_ids(source) == {*shared, *(f"own-{i}" for i in range(16))}


@pytest.mark.django_db(transaction=True)
def test_a_group_holds_at_most_max_messages_and_at_least_one_write(source: Source) -> None:
    writer = RecordingWriter(max_messages=5)
    writer.gate.clear()
    sizes = [2, 2, 2, 2, 2, 2, 7]
    writes = [
        pending_write(source.pk, [f"w{i}-m{k}" for k in range(n)]) for i, n in enumerate(sizes)
    ]
    with ThreadPoolExecutor(len(writes)) as pool:
        futures = []
        for queued, write in enumerate(writes, start=1):
            # One at a time, so the queue's order is known.
            futures.append(pool.submit(writer.store, write, 30))
            writer.wait_for_waiting(queued)
        writer.gate.set()
        results = [future.result() for future in futures]
    assert results == [stored(n) for n in sizes]
    # Two 2-message writes fit in 5 messages, a third does not; the 7-message write is taken
    # alone although it is over the limit.
    assert writer.taken == [2, 2, 2, 1]


@pytest.mark.django_db(transaction=True)
def test_a_write_that_fails_at_the_database_fails_alone(source: Source) -> None:
    # A source deleted while web processes still hold it in their write-key cache: its
    # events break the foreign key, at COMMIT on both backends (Django declares foreign keys
    # DEFERRABLE INITIALLY DEFERRED), so the whole group's transaction fails.
    deleted = source_create(name="Deleted meanwhile")
    deleted_id = deleted.pk
    deleted.delete()
    writer = RecordingWriter()
    writer.gate.clear()
    writes = [
        pending_write(source.pk, ["ok-1"]),
        pending_write(deleted_id, ["lost-1"]),
        pending_write(source.pk, ["ok-2", "ok-3"]),
    ]
    results = store_from_threads(writer, writes, meanwhile=lambda: writer.open_once_waiting(3))

    assert results[0] == stored(1)
    assert isinstance(results[1], IntegrityError), results[1]
    assert results[2] == stored(2)
    assert writer.taken == [3]
    assert writer.committed == [3, 1, 1, 1]  # the group, then each write alone
    assert stored_ids(source) == {"ok-1", "ok-2", "ok-3"}
    assert not Event.objects.filter(message_id="lost-1").exists()
    # The writer carries on.
    assert writer.store(pending_write(source.pk, ["after"]), timeout=10) == stored(1)


@pytest.mark.django_db(transaction=True)
def test_a_writer_that_cannot_answer_times_the_request_out(source: Source) -> None:
    writer = RecordingWriter()
    writer.gate.clear()
    write = pending_write(source.pk, ["slow-1"])
    with ThreadPoolExecutor(1) as pool:
        # From another thread, so that a store() that never gives up fails the test.
        started = time.monotonic()
        attempt = pool.submit(writer.store, write, 0.2)
        try:
            error = attempt.exception(timeout=5)
        finally:
            waited = time.monotonic() - started
            stored_meanwhile = stored_ids(source)
            writer.gate.set()
    assert isinstance(error, WriterTimeout), error
    assert str(error) == "the writer did not answer within 0.2 s"
    assert 0.2 <= waited < 2
    assert stored_meanwhile == set()

    # The write was queued: it is stored once the writer gets to it, so the client's retry
    # (same messageId) is a duplicate, not a second row.
    assert write.done is not None
    assert write.done.wait(10)
    assert write.result == stored(1)
    retry = pending_write(source.pk, ["slow-1"])
    assert writer.store(retry, timeout=10) == StoreResult(stored=0, duplicates=1)


class FirstGroupHeld(RecordingWriter):
    """Holds its first group back until ``release`` is set, as a slow commit would."""

    def __init__(self, threads: int) -> None:
        super().__init__(threads=threads)
        self.release = threading.Event()
        self.first = threading.Lock()

    def commit(self, group: list[PendingWrite]) -> None:
        if self.first.acquire(blocking=False):
            assert self.release.wait(10), "the first group was never released"
        super().commit(group)


@pytest.mark.django_db(transaction=True)
def test_with_two_writer_threads_a_group_is_stored_while_another_waits(source: Source) -> None:
    writer = FirstGroupHeld(threads=2)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(writer.store, pending_write(source.pk, ["held-1"]), 10)
        wait_until(lambda: writer.taken == [1], 5)
        # The second thread takes the next write and commits it while the first is held.
        assert writer.store(pending_write(source.pk, ["next-1"]), timeout=5) == stored(1)
        assert stored_ids(source) == {"next-1"}
        assert not held.done()
        writer.release.set()
        assert held.result(timeout=10) == stored(1)
    assert stored_ids(source) == {"held-1", "next-1"}
    assert sorted(thread.name for thread in writer.threads) == [
        "ingest-writer-1",
        "ingest-writer-2",
    ]


@pytest.mark.django_db(transaction=True)
def test_with_one_writer_thread_the_next_group_waits_for_the_one_before(source: Source) -> None:
    # The same as above with one thread: the control that shows the test above can fail.
    writer = FirstGroupHeld(threads=1)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(writer.store, pending_write(source.pk, ["held-1"]), 10)
        wait_until(lambda: writer.taken == [1], 5)
        with pytest.raises(WriterTimeout):
            writer.store(pending_write(source.pk, ["next-1"]), timeout=0.5)
        writer.release.set()
        assert held.result(timeout=10) == stored(1)
    wait_until(lambda: stored_ids(source) == {"held-1", "next-1"}, 10)


def with_a_request_on_its_way(
    writer: RecordingWriter, source: Source, *, hands_over: bool
) -> tuple[StoreResult | None, StoreResult]:
    """A request inside the ingest view (so counted as on its way) while another request's
    write waits for the writer. Once that write is queued the first request goes on: it hands
    its own write over (``hands_over``) or ends without one, as a refused request does. Both
    answers."""
    go_on = threading.Event()

    def on_its_way() -> StoreResult | None:
        with writer.expecting_write():
            assert go_on.wait(10)
            if not hands_over:
                return None
            return writer.store(pending_write(source.pk, ["on-its-way"]), timeout=10)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(on_its_way)
        wait_until(lambda: writer.arriving == 1, 5)
        waiting = pool.submit(writer.store, pending_write(source.pk, ["waiting"]), 10)
        writer.wait_for_waiting(1)
        assert not waiting.done()
        go_on.set()
        return first.result(timeout=10), waiting.result(timeout=10)


# A long gathering time in the tests below: a write can only share a group because the writer
# waited for it, and a writer that waited the whole time would fail the test's own timeouts.


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("hands_over", "answers", "groups"),
    [
        # The writer waits for the request still being read and takes both writes in one group.
        (True, (stored(1), stored(1)), [2]),
        # A request that ends without a write no longer holds the writer: it is woken as the
        # request ends, well within the 30 s it would otherwise wait.
        (False, (None, stored(1)), [1]),
    ],
    ids=["hands-its-write-over", "ends-without-a-write"],
)
def test_the_writer_waits_for_requests_on_their_way_until_they_hand_over_or_end(
    source: Source,
    monkeypatch: pytest.MonkeyPatch,
    hands_over: bool,
    answers: tuple[StoreResult | None, StoreResult],
    groups: list[int],
) -> None:
    monkeypatch.setattr(group_commit, "GATHER_SECONDS", 30.0)
    writer = RecordingWriter()
    assert with_a_request_on_its_way(writer, source, hands_over=hands_over) == answers
    assert writer.taken == groups
    assert writer.arriving == 0


@pytest.mark.django_db(transaction=True)
def test_with_no_request_on_its_way_the_writer_does_not_wait(
    source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: nothing arriving, so a 30 s gathering time is
    # never spent.
    monkeypatch.setattr(group_commit, "GATHER_SECONDS", 30.0)
    writer = RecordingWriter()
    for number in range(3):
        assert writer.store(pending_write(source.pk, [f"lone-{number}"]), timeout=10) == stored(1)
    assert writer.taken == [1, 1, 1]


@pytest.mark.django_db(transaction=True)
def test_on_sqlite_writers_take_turns_on_a_file_lock(source: Source) -> None:
    path = writer_turns.lock_path()
    if path is None:
        pytest.skip("PostgreSQL: row locks, no turns")
    # Another process's writer holds the turn (its own descriptor, as a process would).
    other = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        writer = RecordingWriter()
        with pytest.raises(WriterTimeout):
            writer.store(pending_write(source.pk, ["waits-1"]), timeout=0.5)
        assert stored_ids(source) == set()
        fcntl.flock(other, fcntl.LOCK_UN)
        wait_until(lambda: stored_ids(source) == {"waits-1"}, 10)
        # Its turn over, the writer commits at once.
        assert writer.store(pending_write(source.pk, ["next-1"]), timeout=10) == stored(1)
    finally:
        os.close(other)


def nothing_on_its_way(writer: RecordingWriter) -> None:
    assert (writer.arriving, len(writer.pending), writer.threads) == (0, 0, [])
    assert writer.ready.acquire(timeout=5)  # not left held by a parent's thread


@pytest.mark.django_db(transaction=True)
def test_a_forked_process_starts_with_a_writer_of_its_own(source: Source) -> None:
    writer = RecordingWriter()
    assert writer.store(pending_write(source.pk, ["parent-1"]), timeout=10) == stored(1)
    with writer.expecting_write(), writer.ready:
        writer.pending.append(pending_write(source.pk, ["not-for-the-child"]))
        child = multiprocessing.get_context("fork").Process(
            target=nothing_on_its_way, args=(writer,)
        )
        child.start()
        child.join(30)
        writer.pending.clear()
    assert child.exitcode == 0


def test_writer_threads_follow_the_database_unless_set(settings: Any) -> None:
    settings.INGEST_WRITERS = 0
    assert writer_threads() == 1
    settings.INGEST_WRITERS = 3
    assert writer_threads() == 3


@pytest.mark.django_db(transaction=True)
def test_an_idle_writer_gives_its_connection_back(source: Source) -> None:
    writer = RecordingWriter()
    assert writer.store(pending_write(source.pk, ["m1"]), timeout=10) == stored(1)
    database = writer.database
    assert database is not None and database.connection is not None
    wait_until(lambda: database.connection is None, IDLE_SECONDS + 5)
    assert writer.store(pending_write(source.pk, ["m2"]), timeout=10) == stored(1)
    assert database.connection is not None


# --- store_accepted and the view ----------------------------------------------------------------


@pytest.fixture
def held_writer(monkeypatch: pytest.MonkeyPatch, settings: Any) -> RecordingWriter:
    """The process's writer, replaced by one that takes nothing until its gate is opened."""
    # A request wrongly sent to it fails in seconds, not after the default minute.
    settings.INGEST_WRITER_TIMEOUT_SECONDS = 2.0
    writer = RecordingWriter()
    writer.gate.clear()
    monkeypatch.setattr(group_commit, "_writer", writer)
    return writer


@pytest.mark.django_db
def test_inside_a_transaction_messages_are_stored_inline(
    source: Source, held_writer: RecordingWriter
) -> None:
    assert store_accepted(pending_write(source.pk, ["m1"])) == stored(1)
    assert stored_ids(source) == {"m1"}
    assert held_writer.threads == []


@pytest.mark.django_db(transaction=True)
def test_with_group_commit_off_messages_are_stored_inline(
    source: Source, held_writer: RecordingWriter, settings: Any
) -> None:
    settings.INGEST_GROUP_COMMIT = False
    assert store_accepted(pending_write(source.pk, ["m1"])) == stored(1)
    assert stored_ids(source) == {"m1"}
    assert held_writer.threads == []


@pytest.mark.django_db(transaction=True)
def test_with_group_commit_on_requests_go_through_the_writer(
    source: Source, held_writer: RecordingWriter, settings: Any
) -> None:
    settings.INGEST_GROUP_MAX_MESSAGES = 7
    held_writer.gate.set()
    assert store_accepted(pending_write(source.pk, ["m1"])) == stored(1)
    assert held_writer.taken == [1]
    assert held_writer.max_messages == 7
    assert len(held_writer.threads) == held_writer.threads_wanted == writer_threads()


@pytest.mark.django_db(transaction=True)
def test_a_request_the_writer_does_not_answer_in_time_is_told_to_retry(
    client: Client, source: Source, held_writer: RecordingWriter, settings: Any
) -> None:
    settings.INGEST_WRITER_TIMEOUT_SECONDS = 0.2

    def post() -> Any:
        return client.post(
            "/v1/track",
            {"userId": "u1", "event": "Clicked", "messageId": "late-1"},
            content_type="application/json",
            headers={"Authorization": basic(source.write_key)},
        )

    response = post()
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    answer = response.json()
    assert (answer["code"], answer["error"]) == (
        "unavailable",
        "Events could not be stored just now; retry",
    )

    held_writer.gate.set()
    wait_until(lambda: stored_ids(source) == {"late-1"}, 10)
    retried = post()
    assert retried.status_code == 200, retried.content
    assert retried.json() == {"success": True, "stored": 0, "duplicates": 1}


@pytest.mark.django_db(transaction=True)
def test_refused_items_of_a_request_told_to_retry_are_listed_once_by_the_retry(
    client: Client, source: Source, held_writer: RecordingWriter, settings: Any
) -> None:
    settings.INGEST_WRITER_TIMEOUT_SECONDS = 0.2
    batch = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "Clicked", "messageId": "late-ok"},
            {"type": "track", "userId": "u1", "messageId": "late-no-event"},
        ]
    }

    def post() -> Any:
        return client.post(
            "/v1/batch",
            batch,
            content_type="application/json",
            headers={"Authorization": basic(source.write_key)},
        )

    assert post().status_code == 503
    held_writer.gate.set()
    # The queued write is still stored (its messages), without its refused item...
    wait_until(lambda: stored_ids(source) == {"late-ok"}, 10)
    assert held_writer.waiting() == 0
    assert not IngestFailure.objects.filter(source=source).exists()
    # ...which the SDK's retry brings again, and which is listed then, once.
    retried = post()
    assert retried.status_code == 200, retried.content
    assert retried.json()["duplicates"] == 1
    assert [f["index"] for f in retried.json()["failed"]] == [1]
    assert IngestFailure.objects.filter(source=source).count() == 1


def test_refusals_already_taken_by_a_writer_are_kept(source: Source) -> None:
    writer = RecordingWriter()
    refused = [RefusedMessage(index=0, reason="event: missing", excerpt="{}")]
    queued = pending_write(source.pk, [], refused=refused)
    writer.pending.append(queued)
    assert writer.withdraw_refusals(queued) is True and list(queued.refused) == []
    taken = pending_write(source.pk, [], refused=refused)  # not in the queue: a writer has it
    assert writer.withdraw_refusals(taken) is False and list(taken.refused) == refused


@pytest.mark.django_db(transaction=True)
def test_a_write_key_that_cannot_be_looked_up_is_told_to_retry(
    client: Client, source: Source
) -> None:
    """The database is unreachable when the request's write key is not in the process's cache:
    503 with Retry-After, as when the events cannot be stored, not a 500."""
    forget_cached_sources()

    def unreachable(*_args: Any) -> Any:
        raise OperationalError("connection refused")

    with connection.execute_wrapper(unreachable):
        response = client.post(
            "/v1/track",
            {"userId": "u1", "event": "Clicked", "messageId": "m-down"},
            content_type="application/json",
            headers={"Authorization": basic(source.write_key)},
        )
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert stored_ids(source) == set()

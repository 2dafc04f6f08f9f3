"""The ingest writer process's link and loop, in this process: frames carry writes and outcomes
unchanged; the loop (``writer_process.serve``, on a thread here, with a database connection of
its own) stores what several links send, each write answered with its own counts or error; a web
process whose writer process is gone stores its groups itself.

The loop's thread sees only committed rows, so these tests use ``transaction=True``. The process
itself, run by ``start``, is tested in tests/ingest/test_killed_writer_process.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.db import (
    DatabaseError,
    Error,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destinations.ingest.group_commit import LINK_MIN_MESSAGES, GroupWriter, PendingWrite
from destinations.ingest.store import RefusedMessage, StoreResult
from destinations.ingest.writer_link import (
    LinkBroken,
    WriterError,
    WriterLink,
    apply_results,
    decode_writes,
    encode_results,
    encode_writes,
    recv_frame,
    send_frame,
)
from destinations.ingest.writer_process import serve
from destinations.messages.message import InvalidMessage, validate_message
from destinations.models import Event, IngestFailure, Source
from tests.helpers.group_commit import pending_write

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(
    properties=st.dictionaries(st.text(), json_values, max_size=6),
    user_id=st.text(min_size=1, max_size=40).filter(str.strip),
    message_id=st.text(min_size=1, max_size=40).filter(str.strip),
    refusals=st.lists(
        st.tuples(st.none() | st.integers(0, 10_000), st.text(), st.text()), max_size=3
    ),
    demo=st.booleans(),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_a_write_crosses_the_link_unchanged(
    properties: dict[str, object],
    user_id: str,
    message_id: str,
    refusals: list[tuple[int | None, str, str]],
    demo: bool,
) -> None:
    received_at = datetime(2026, 12, 8, 3, 4, 5, 678901, tzinfo=UTC)
    item = {
        "type": "track",
        "event": "Report Exported",
        "userId": user_id,
        "messageId": message_id,
        "properties": properties,
        "timestamp": "2026-12-08T03:00:00.5+01:00",
    }
    try:
        message = validate_message(item, call_type=None, received_at=received_at)
    except InvalidMessage:
        return  # refused by validation: never reaches the writer
    write = PendingWrite(
        source_id=7,
        messages=[message],
        received_at=received_at,
        demo=demo,
        refused=[RefusedMessage(*refusal) for refusal in refusals],
        endpoint="/v1/batch",
    )
    (arrived,) = decode_writes(encode_writes([write]))
    assert arrived.messages == [message]  # every field, the parsed payload and its JSON
    assert arrived.messages[0].payload == message.payload
    assert (arrived.source_id, arrived.demo, arrived.endpoint) == (7, demo, "/v1/batch")
    assert arrived.received_at == received_at and arrived.received_at.tzinfo is UTC
    assert list(arrived.refused) == list(write.refused)


def test_outcomes_come_back_in_order_and_a_wrong_count_breaks_the_link() -> None:
    writes = [pending_write(1, ["a"]), pending_write(1, ["b"])]
    writes[0].result = StoreResult(stored=1, duplicates=0)
    writes[1].error = RuntimeError("disk full")
    data = encode_results(writes)
    fresh = [pending_write(1, ["a"]), pending_write(1, ["b"])]
    apply_results(fresh, data)
    assert fresh[0].result == StoreResult(stored=1, duplicates=0) and fresh[0].error is None
    assert type(fresh[1].error) is WriterError and "disk full" in str(fresh[1].error)
    with pytest.raises(LinkBroken):
        apply_results(fresh[:1], data)


@pytest.mark.parametrize("error", [IntegrityError, OperationalError, InterfaceError, DatabaseError])
def test_a_database_error_comes_back_as_its_own_class(error: type[Error]) -> None:
    write = pending_write(1, ["a"])
    write.error = error("database is locked")
    fresh = pending_write(1, ["a"])
    apply_results([fresh], encode_results([write]))
    assert type(fresh.error) is error and str(fresh.error) == "database is locked"


def test_a_frame_longer_than_allowed_or_cut_short_breaks_the_link() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall((2**31).to_bytes(4, "big"))
        with pytest.raises(LinkBroken, match="frame of"):
            recv_frame(ours)
    ours, theirs = socket.socketpair()
    with ours:
        theirs.sendall((100).to_bytes(4, "big") + b"only part")
        theirs.close()
        with pytest.raises(LinkBroken, match="closed"):
            recv_frame(ours)


class RunningWriter:
    """``serve`` on a thread, with one link per simulated web process."""

    def __init__(self, links: int) -> None:
        pairs = [socket.socketpair() for _ in range(links)]
        self.web_ends = [web for web, _ in pairs]
        self.thread = threading.Thread(target=self.run, args=([far for _, far in pairs],))
        self.error: BaseException | None = None
        self.thread.start()

    def run(self, far_ends: list[socket.socket]) -> None:
        try:
            serve(far_ends)
        except BaseException as error:  # shown by the test, not lost in the thread
            self.error = error
        finally:
            connection.close()
            for far in far_ends:
                far.close()

    def stop(self) -> None:
        for web in self.web_ends:
            web.close()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the writer loop did not stop once its links closed"
        assert self.error is None, self.error


@pytest.fixture
def running_writer() -> Iterator[RunningWriter]:
    writer = RunningWriter(links=2)
    try:
        yield writer
    finally:
        writer.stop()


def stored_ids(source: Source) -> set[str]:
    return set(Event.objects.filter(source=source).values_list("message_id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_the_writer_stores_each_links_writes_and_answers_each_with_its_counts(
    running_writer: RunningWriter, source: Source
) -> None:
    first, second = (WriterLink(web) for web in running_writer.web_ends)
    refused = [RefusedMessage(index=1, reason="type: unknown", excerpt="{}")]
    mine = [
        pending_write(source.pk, ["a", "b"]),
        pending_write(source.pk, ["b", "c"], refused=refused),
    ]
    first.commit(mine)
    assert [w.result for w in mine] == [
        StoreResult(stored=2, duplicates=0),
        StoreResult(stored=1, duplicates=1),
    ]
    theirs = [pending_write(source.pk, ["c", "d"]), pending_write(9_999_999, ["x"])]
    second.commit(theirs)
    # The unknown source fails alone (its group is stored again write by write), with the
    # error the web process answers as for an unknown write key.
    assert theirs[0].result == StoreResult(stored=1, duplicates=1) and theirs[0].error is None
    assert theirs[1].result is None and type(theirs[1].error) is IntegrityError
    assert stored_ids(source) == {"a", "b", "c", "d"}
    assert list(IngestFailure.objects.values_list("reason", flat=True)) == ["type: unknown"]


@pytest.mark.django_db(transaction=True)
def test_writes_from_two_links_at_once_are_each_stored_once(
    running_writer: RunningWriter, source: Source
) -> None:
    links = [WriterLink(web) for web in running_writer.web_ends]
    results: dict[int, list[StoreResult | None]] = {}

    def send(number: int) -> None:
        outcomes: list[StoreResult | None] = []
        for round_ in range(20):
            write = pending_write(source.pk, [f"{round_}-shared", f"{round_}-{number}"])
            links[number].commit([write])
            outcomes.append(write.result)
        results[number] = outcomes

    threads = [threading.Thread(target=send, args=(number,)) for number in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for round_ in range(20):
        pair = [results[number][round_] for number in range(2)]
        # The shared messageId is stored for one link and a duplicate for the other.
        assert sorted((r.stored, r.duplicates) for r in pair if r) == [(1, 1), (2, 0)]
    assert len(stored_ids(source)) == 60


@pytest.mark.django_db(transaction=True)
def test_a_web_process_stores_its_groups_itself_once_the_writer_process_is_gone(
    source: Source, caplog: pytest.LogCaptureFixture
) -> None:
    web_end, writer_end = socket.socketpair()
    writer_end.close()  # the writer process died
    writer = GroupWriter(max_messages=1000)
    link = WriterLink(web_end)
    writer.link = link
    big = [f"kept-{number}" for number in range(LINK_MIN_MESSAGES)]
    result = writer.store(pending_write(source.pk, big), timeout=30)
    assert result == StoreResult(stored=LINK_MIN_MESSAGES, duplicates=0)
    assert link.broken
    assert "the writer process is gone" in caplog.text
    # Later groups do not try the broken link again.
    more = [f"next-{number}" for number in range(LINK_MIN_MESSAGES)]
    assert writer.store(pending_write(source.pk, more), timeout=30).stored == LINK_MIN_MESSAGES
    assert stored_ids(source) == set(big) | set(more)


@pytest.mark.django_db(transaction=True)
def test_only_large_groups_go_to_the_writer_process(source: Source) -> None:
    web_end, writer_end = socket.socketpair()
    with web_end, writer_end:
        writer = GroupWriter(max_messages=1000)
        writer.link = WriterLink(web_end)
        small = [f"small-{number}" for number in range(LINK_MIN_MESSAGES - 1)]
        assert writer.store(pending_write(source.pk, small), timeout=30).stored == len(small)
        assert stored_ids(source) == set(small)
        writer_end.setblocking(False)
        with pytest.raises(BlockingIOError):
            writer_end.recv(1)  # nothing was sent: stored in this process
        big = [f"big-{number}" for number in range(LINK_MIN_MESSAGES)]
        write = pending_write(source.pk, big)
        answered = threading.Event()
        write.on_done = lambda _write: answered.set()
        writer.submit([write])
        writer_end.setblocking(True)
        (arrived,) = decode_writes(recv_frame(writer_end))
        assert [m.message_id for m in arrived.messages] == big
        # Answered as the writer process would (without storing): the web process takes it.
        arrived.result = StoreResult(stored=LINK_MIN_MESSAGES, duplicates=0)
        send_frame(writer_end, encode_results([arrived]))
        assert answered.wait(10)
        assert write.result == arrived.result and write.error is None
        assert stored_ids(source) == set(small)  # the big group was not stored here


@pytest.mark.django_db(transaction=True)
def test_a_link_that_sends_garbage_is_dropped_and_the_other_still_served(
    running_writer: RunningWriter, source: Source
) -> None:
    garbled, healthy = running_writer.web_ends
    send_frame(garbled, b"not a pickle")
    garbled.settimeout(10)
    assert garbled.recv(1) == b""  # the writer closed its end
    write = pending_write(source.pk, ["after-garbage"])
    WriterLink(healthy).commit([write])
    assert write.result == StoreResult(stored=1, duplicates=0)

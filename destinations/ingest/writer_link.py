"""The link between a web process and the ingest writer process: frames, and what they carry.

On SQLite every web process used to write its own groups, taking turns on the database with the
others (destinations/ingest/writer_turns.py). Each turn paid for the other process's write: its
page cache was thrown away (SQLite rereads what another connection changed), and the writer
waited for the GIL of its own process, busy validating the next request on the event loop,
while the other process waited for the lock it held. One writer process for the whole server
stores the large groups of all the web processes instead (groups of batches; a few single events
cost more to send than they save, and stay where they arrived: docs/decisions/0029-ingest-path.md).

A web process and the writer process talk over a connected socket pair made by the web server's
launcher, so nothing else can connect to either end. A frame is a 4-byte length and a pickle:
from the web process, a group of writes; back, each write's counts or error, in the same order.
Pickle is safe here because both ends are Switchboard processes started together; the messages
travel as the fields and the payload's JSON bytes (the payload is parsed again on the other side,
a few microseconds an event, instead of pickling the nested dict).
"""

from __future__ import annotations

import dataclasses
import pickle
import socket
import struct
from collections.abc import Sequence
from typing import Any

import orjson
from django.db import DatabaseError, Error
from django.db import utils as database

from destinations.ingest.group_commit import PendingWrite, use_link
from destinations.ingest.store import RefusedMessage, StoreResult
from destinations.messages.message import Message

LENGTH = struct.Struct("!I")
# A group holds at most INGEST_GROUP_MAX_MESSAGES events of at most 32 KB each as JSON; a frame
# larger than this means the stream is out of step, not a big group.
MAX_FRAME_BYTES = 1 << 30


class LinkBroken(ConnectionError):
    """The other end closed the link or sent something that is not a frame."""


class WriterError(DatabaseError):
    """A write the writer process could not store, for a reason that is not a database error."""


# A write's database error comes back as the same class, so the web process answers it as it
# would its own (a deleted source's IntegrityError is a 401, an OperationalError a 503).
DATABASE_ERRORS: dict[str, type[Error]] = {
    error.__name__: error
    for error in (
        database.DataError,
        database.IntegrityError,
        database.InterfaceError,
        database.InternalError,
        database.NotSupportedError,
        database.OperationalError,
        database.ProgrammingError,
        database.DatabaseError,
    )
}


def send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(LENGTH.pack(len(data)) + data)


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise LinkBroken("the other end closed the link")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = LENGTH.unpack(recv_exactly(sock, LENGTH.size))
    if size > MAX_FRAME_BYTES:
        raise LinkBroken(f"a frame of {size:,} bytes")
    return recv_exactly(sock, size)


# What a message carries across: its fields but the parsed payload, which is rebuilt from its
# JSON bytes on the other side.
CARRIED = tuple(f.name for f in dataclasses.fields(Message) if f.name != "payload")


def message_fields(message: Message) -> tuple[Any, ...]:
    payload_json = message.payload_json or orjson.dumps(message.payload)
    return tuple(
        payload_json if name == "payload_json" else getattr(message, name) for name in CARRIED
    )


def message_from(fields: tuple[Any, ...]) -> Message:
    carried = dict(zip(CARRIED, fields, strict=True))
    return Message(**carried, payload=orjson.loads(carried["payload_json"]))


def encode_writes(writes: Sequence[PendingWrite]) -> bytes:
    return pickle.dumps(
        [
            (
                write.source_id,
                write.demo,
                write.received_at,
                write.endpoint,
                [(r.index, r.reason, r.excerpt) for r in write.refused],
                [message_fields(m) for m in write.messages],
            )
            for write in writes
        ],
        protocol=pickle.HIGHEST_PROTOCOL,
    )


def decode_writes(data: bytes) -> list[PendingWrite]:
    return [
        PendingWrite(
            source_id=source_id,
            demo=demo,
            received_at=received_at,
            endpoint=endpoint,
            refused=[RefusedMessage(*refused) for refused in refusals],
            messages=[message_from(fields) for fields in messages],
        )
        for source_id, demo, received_at, endpoint, refusals, messages in pickle.loads(data)
    ]


def encode_results(writes: Sequence[PendingWrite]) -> bytes:
    """Each write's counts, or its error's class name and text (the error itself may not
    pickle)."""
    outcomes: list[tuple[int, int, int] | tuple[str, str]] = []
    for write in writes:
        if write.result is not None:
            result = write.result
            outcomes.append((result.stored, result.duplicates, result.suppressed))
        else:
            outcomes.append((type(write.error).__name__, str(write.error)))
    return pickle.dumps(outcomes, protocol=pickle.HIGHEST_PROTOCOL)


def apply_results(writes: Sequence[PendingWrite], data: bytes) -> None:
    outcomes = pickle.loads(data)
    if len(outcomes) != len(writes):
        raise LinkBroken(f"{len(outcomes)} results for {len(writes)} writes")
    for write, outcome in zip(writes, outcomes, strict=True):
        if len(outcome) == 2:
            name, text = outcome
            known = DATABASE_ERRORS.get(name)
            write.error = known(text) if known else WriterError(f"{name}: {text}")
        else:
            write.result = StoreResult(*outcome)


class WriterLink:
    """A web process's end: send a group, wait for its outcomes (on a writer thread, which is
    the only one using the link)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self.sock = sock
        self.broken = False

    def commit(self, group: Sequence[PendingWrite]) -> None:
        """Set each write's result or error from the writer process's answer; raise
        ``LinkBroken`` (or ``OSError``) if there is none, when whether the group was stored is
        not known."""
        try:
            send_frame(self.sock, encode_writes(group))
            apply_results(group, recv_frame(self.sock))
        except (OSError, pickle.UnpicklingError, ValueError, EOFError) as error:
            self.broken = True
            self.sock.close()
            raise LinkBroken(str(error)) from error


def use_writer_process(sock: socket.socket) -> None:
    """From now on this process's ingest groups are stored by the writer process at the other
    end of ``sock``; if it goes, this process stores them itself again."""
    use_link(WriterLink(sock))

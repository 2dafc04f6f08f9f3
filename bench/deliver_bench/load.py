"""Phase 3's load: Segment calls, one event per request, offered open-loop at a fixed rate by an
asyncio HTTP/1.1 keep-alive client in the bench process."""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from dataclasses import dataclass, field

import measure.load
from measure.load import http_post
from measure.servers import HOST

from deliver_bench.app import event_document

# A client must not send on a keep-alive connection the server may be closing: connections idle
# longer than this are dropped (the server closes them after SWITCHBOARD_CLIENT_TIMEOUT_SECONDS;
# gunicorn, before ADR 0019, after 2 s).
IDLE_LIMIT = 1.0


@dataclass
class Tally:
    """What the load sent and what came back: statuses, and each request's latency from its
    scheduled send time."""

    requests: int = 0
    statuses: Counter[int | str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0


async def post(idle: list[Connection], port: int, data: bytes) -> int:
    """One request on a recently used keep-alive connection, or a new one; returns the status."""
    connection = None
    while idle and connection is None:
        connection = idle.pop()
        if time.monotonic() - connection.idle_since > IDLE_LIMIT or connection.reader.at_eof():
            connection.writer.close()
            connection = None
    if connection is None:
        connection = Connection(*await asyncio.open_connection(HOST, port))
    connection.writer.write(data)
    head = await connection.reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await connection.reader.readexactly(length)
    if b"connection: close" in head.lower():
        connection.writer.close()
    else:
        connection.idle_since = time.monotonic()
        idle.append(connection)
    return int(head[9:12])


async def open_loop(
    port: int, write_key: str, rate: float, seconds: float, prefix: str = "lat"
) -> Tally:
    """Send request i at start + i / rate whatever happened to the earlier ones; their
    messageIds are ``prefix-i`` (a run offering the load again needs another prefix: ingest
    drops a messageId it has stored)."""
    authorization = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    tally = Tally()
    idle: list[Connection] = []

    async def send(number: int, scheduled: float) -> None:
        document = event_document(f"{prefix}-{number}", number)
        data = http_post(f"/v1/{document['type']}", document, authorization)
        tally.requests += 1
        try:
            status = await post(idle, port, data)
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.statuses[type(exc).__name__] += 1
            return
        tally.statuses[status] += 1
        tally.latencies.append(time.perf_counter() - scheduled)

    await measure.load.open_loop(rate, seconds, send, lead=0.05)
    for connection in idle:
        connection.writer.close()
    return tally

"""The load generator: a minimal asyncio HTTP/1.1 keep-alive client in the bench process, and
the two ways it offers load: a closed loop (N connections, each sending its next request as
soon as the last is answered) and an open loop (a fixed rate, whatever the answers)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field

import measure.load
import orjson
from measure.servers import HOST

from ingest_bench.config import MakeRequest


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if self.waiter is None or end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip() == b"close":
                self.closed = True
        if len(self.buffer) < end + 4 + length:
            return
        status, body = int(head[9:12]), bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None and self.waiter is None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int) -> HttpConnection:
    """A new keep-alive connection to the server on ``port``."""
    _, protocol = await asyncio.get_running_loop().create_connection(HttpConnection, HOST, port)
    return protocol


@dataclass
class Tally:
    """What one phase sent and what came back."""

    requests: int = 0
    events: int = 0
    ok_events: int = 0
    stored_reported: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    most_connections: int = 0

    def sent(self, events: int) -> None:
        self.requests += 1
        self.events += events

    def answered(self, status: int, body: bytes, events: int, latency: float) -> None:
        self.statuses[str(status)] += 1
        self.latencies.append(latency)
        if status == 200:
            self.ok_events += events
            self.stored_reported += int(orjson.loads(body).get("stored", 0))


async def closed_loop(
    port: int, connections: int, seconds: float, make: MakeRequest, limit: int | None = None
) -> Tally:
    """``connections`` clients, each sending its next request as soon as the last is answered.

    Nothing starts after the deadline (or past ``limit`` requests) and every started request is
    waited for, so what was sent is exactly what the server was asked to store.
    """
    tally = Tally(most_connections=connections)
    numbers = iter(range(limit)) if limit is not None else itertools.count()
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        connection = await connect(port)
        while time.perf_counter() < deadline and (number := next(numbers, None)) is not None:
            data, events = make(number)
            tally.sent(events)
            sent = time.perf_counter()
            try:
                status, body = await connection.request(data)
            except ConnectionError as exc:
                tally.statuses[type(exc).__name__] += 1
            else:
                tally.answered(status, body, events, time.perf_counter() - sent)
            if connection.closed:
                connection = await connect(port)
        connection.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return tally


async def open_loop(port: int, rate: float, seconds: float, make: MakeRequest) -> Tally:
    """Send request i at start + i / rate whether or not earlier ones have been answered.

    A request takes an idle keep-alive connection or opens a new one, so a slow server meets
    more concurrent requests, as it would from many independent clients. Latency counts from the
    scheduled send time.
    """
    tally = Tally()
    idle: list[HttpConnection] = []
    in_flight = 0

    async def send(number: int, scheduled: float) -> None:
        nonlocal in_flight
        in_flight += 1
        tally.most_connections = max(tally.most_connections, in_flight)
        data, events = make(number)
        tally.sent(events)
        while idle and idle[-1].closed:
            idle.pop()
        connection = idle.pop() if idle else await connect(port)
        try:
            status, body = await connection.request(data)
        except ConnectionError:
            # The server may close an idle keep-alive connection just as it is reused; the
            # messageId makes sending again on a new connection safe.
            connection = await connect(port)
            status, body = await connection.request(data)
        tally.answered(status, body, events, time.perf_counter() - scheduled)
        idle.append(connection)
        in_flight -= 1

    await measure.load.open_loop(rate, seconds, send, lead=0.01)
    for connection in idle:
        connection.close()
    return tally

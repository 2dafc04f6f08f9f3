"""The fake Refiner the deliveries go to, and the ceiling's client: a plain
``requests.Session`` loop against the same server. Both run as roles of ``deliver.py`` in child
processes of their own (``deliver.py serve``, ``deliver.py ceiling ...``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import orjson
import requests
from measure.paths import ROOT
from measure.servers import HOST
from requests.adapters import HTTPAdapter

from deliver_bench.config import API_KEY, SELF


class FakeRefiner(asyncio.Protocol):
    """HTTP/1.1 with keep-alive: every POST is counted and answered ``{"message":"ok"}``;
    ``GET /stats`` answers the counts. Requests without the bench's key get Refiner's 401."""

    counts: Counter[str] = Counter()
    OK = b'{"message":"ok"}'
    UNAUTHORIZED = b'{"error":"No API key found in headers"}'
    AUTH = f"authorization: bearer {API_KEY}".encode()

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            method, path = head.split(b" ", 2)[:2]
            self.answer(method, path.decode(), head)

    def answer(self, method: bytes, path: str, head: bytes) -> None:
        assert self.transport is not None
        if method == b"get" and path == "/stats":
            status, body = b"200 OK", orjson.dumps(dict(self.counts))
        elif self.AUTH not in head:
            self.counts["unauthorized"] += 1
            status, body = b"401 Unauthorized", self.UNAUTHORIZED
        else:
            self.counts[path] += 1
            self.counts["requests"] += 1
            status, body = b"200 OK", self.OK
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


def serve_role(argv: Sequence[str]) -> int:
    """``deliver.py serve``: run the fake Refiner on a free port, print the port, serve."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(FakeRefiner, HOST, 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        async with server:
            await stop

    asyncio.run(serve())
    return 0


@contextlib.contextmanager
def fake_refiner() -> Iterator[tuple[int, int]]:
    """The fake Refiner in a child process for the whole run: its (port, pid)."""
    process = subprocess.Popen(
        [*SELF, "serve"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fake_refiner_counts(port: int) -> Counter[str]:
    response = requests.get(f"http://{HOST}:{port}/stats", timeout=5)
    return Counter(response.json())


def refiner_session() -> requests.Session:
    """Set up like destinations.delivery.http.session()."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=8, max_retries=0)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "Switchboard"
    return session


def ceiling_role(argv: Sequence[str]) -> int:
    """``deliver.py ceiling PORT THREADS START_AT SECONDS``: from START_AT (epoch seconds),
    THREADS threads each POST in a loop on their own session for SECONDS; prints
    ``{"requests": n, "errors": n}``."""
    port, threads = int(argv[0]), int(argv[1])
    start_at, seconds = float(argv[2]), float(argv[3])
    url = f"http://{HOST}:{port}/v1/track-event"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    counts = [0] * threads
    errors = [0] * threads

    def loop(index: int) -> None:
        session = refiner_session()
        time.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + seconds
        number = 0
        while time.time() < deadline:
            body = {"id": f"user-{index}-{number}", "event": "Order Completed"}
            response = session.request(
                "POST", url, json=body, headers=headers, timeout=(5.0, 10), allow_redirects=False
            )
            number += 1
            if response.status_code != 200:
                errors[index] += 1
        counts[index] = number

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print(json.dumps({"requests": sum(counts), "errors": sum(errors)}), flush=True)
    return 0

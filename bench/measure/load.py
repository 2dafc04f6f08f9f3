"""What a load generator sends and when: the SDK the payloads imitate, Segment timestamps,
whole HTTP POSTs, and the open loop that offers them at a fixed rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import orjson

from measure.servers import HOST

LIBRARY = {"name": "analytics-python", "version": "2.3.3"}  # the SDK the payloads imitate


def iso(moment: datetime | None = None) -> str:
    """A Segment timestamp: UTC, milliseconds, ``Z`` (now when no moment is given)."""
    moment = datetime.now(UTC) if moment is None else moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_post(path: str, document: dict[str, Any], authorization: str) -> bytes:
    """A whole HTTP/1.1 POST of ``document`` as JSON, ready to write to a keep-alive socket."""
    body = orjson.dumps(document)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: {authorization}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def open_loop(
    rate: float,
    seconds: float,
    send: Callable[[int, float], Coroutine[Any, Any, None]],
    lead: float,
) -> None:
    """Start ``send(i, scheduled)`` at ``scheduled`` = start + i / rate, ``rate * seconds``
    times, whatever happened to the earlier ones (an open loop: a stalled server cannot slow
    the offered load); then wait for them all. The first starts ``lead`` seconds from now."""
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter() + lead
    for number in range(int(rate * seconds)):
        scheduled = started + number / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(send(number, scheduled)))
    await asyncio.gather(*tasks)

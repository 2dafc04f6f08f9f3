"""What the load sends: analytics-python-style ``track`` calls, one per ``/v1/track`` request or
100 per ``/v1/batch`` request, each request numbered and with messageIds under a phase's prefix
(the rows are counted by that prefix afterwards)."""

from __future__ import annotations

import random
from typing import Any

from measure.load import LIBRARY, http_post, iso

from ingest_bench.config import BATCH_SIZE, USERS, MakeRequest


def track_event(message_id: str, user: int, rng: random.Random) -> dict[str, Any]:
    """A server-side SDK's track call: userId, event name, a few properties."""
    return {
        "type": "track",
        "messageId": message_id,
        "userId": f"user-{user}",
        "event": "Order Completed",
        "properties": {
            "order_id": message_id,
            "revenue": round(rng.uniform(5, 500), 2),
            "currency": "USD",
            "products": [{"sku": f"SKU-{rng.randrange(1000)}", "quantity": 1 + rng.randrange(3)}],
        },
        "timestamp": iso(),
    }


def single_requests(prefix: str, authorization: str) -> MakeRequest:
    rng = random.Random(prefix)

    def make(number: int) -> tuple[bytes, int]:
        event = track_event(f"{prefix}-{number}", rng.randrange(USERS), rng)
        event["context"] = {"library": LIBRARY}
        return http_post("/v1/track", event, authorization), 1

    return make


def batch_requests(prefix: str, authorization: str, *, seed: bool = False) -> MakeRequest:
    """What analytics-python posts to /v1/batch; ``seed`` gives batch n the users n*100...+99."""
    rng = random.Random(prefix)

    def make(number: int) -> tuple[bytes, int]:
        users = (
            range(number * BATCH_SIZE, (number + 1) * BATCH_SIZE)
            if seed
            else [rng.randrange(USERS) for _ in range(BATCH_SIZE)]
        )
        items = [track_event(f"{prefix}-{number}-{j}", u, rng) for j, u in enumerate(users)]
        document = {"batch": items, "context": {"library": LIBRARY}, "sentAt": iso()}
        return http_post("/v1/batch", document, authorization), len(items)

    return make

"""Queue names. Installations sharing one broker keep apart by their queue (SWITCHBOARD_QUEUE);
each has a second queue for replays, served by a worker process of its own."""

from __future__ import annotations


def replay_queue(default_queue: str) -> str:
    return f"{default_queue}.replay"

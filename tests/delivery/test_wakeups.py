"""Wake-ups are gathered per process before they become tasks (destinations.delivery.enqueue)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from destinations.delivery import enqueue


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[list[int]]:
    """The task payloads that would go to the broker, in the order sent."""
    settings.DELIVERY_COALESCE_SECONDS = 0.05
    settings.DELIVERY_TASK_BATCH = 100
    chunks: list[list[int]] = []
    lock = threading.Lock()

    def capture(batch: list[list[int]]) -> None:
        with lock:
            chunks.extend(batch)

    # Wake-ups an earlier test gathered go out now, not into this test's capture.
    enqueue.flush_wakeups()
    monkeypatch.setattr(enqueue, "send_wakeups", capture)
    monkeypatch.setattr(enqueue, "_buffer", enqueue.new_buffer())
    return chunks


def wait_for(chunks: list[list[int]], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(chunks) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_single_requests_close_together_become_one_task_per_destination(
    sent: list[list[int]],
) -> None:
    for delivery_id in range(1, 6):
        enqueue.enqueue_deliveries({7: [delivery_id]})
    enqueue.enqueue_deliveries({8: [99]})
    assert sent == []  # nothing goes out before the gathering time is up
    wait_for(sent, 2)
    time.sleep(0.1)
    assert sorted(sent) == [[1, 2, 3, 4, 5], [99]]


def test_a_full_chunk_goes_at_once_and_the_rest_after_the_gathering_time(
    sent: list[list[int]],
) -> None:
    enqueue.enqueue_deliveries({7: list(range(250))})
    assert sent == [list(range(100)), list(range(100, 200))]
    wait_for(sent, 3)
    assert sent[2] == list(range(200, 250))


def test_flush_sends_what_was_gathered_now(sent: list[list[int]]) -> None:
    enqueue.enqueue_deliveries({7: [1, 2]})
    enqueue.flush_wakeups()  # what a process exiting does (atexit)
    assert sent == [[1, 2]]
    time.sleep(0.1)
    assert sent == [[1, 2]]  # the timer found nothing left to send


def test_no_gathering_time_sends_each_wakeup_at_once(sent: list[list[int]], settings: Any) -> None:
    settings.DELIVERY_COALESCE_SECONDS = 0
    enqueue.enqueue_deliveries({7: [1], 8: [2, 3]})
    assert sent == [[1], [2, 3]]

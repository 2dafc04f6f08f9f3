"""Ids gathered per process for a moment, then sent as a few tasks instead of one per request.

A task costs a worker several milliseconds whatever it carries, so at hundreds of single-event
requests a second, a task per request would spend the workers on overhead. Ids are gathered per
key for ``delay()`` seconds, then handed to ``send`` in chunks of ``batch()``; a full chunk goes
at once. Ids still gathered when a process dies are not lost work as long as the database says
what is owed (the sweeper finds deliveries, the window pass finds audience changes).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Iterable, Mapping

Send = Callable[[list[list[int]]], None]


class Coalescer:
    def __init__(self, send: Send, *, batch: Callable[[], int], delay: Callable[[], float]):
        self.send = send
        self.batch = batch
        self.delay = delay
        self.lock = threading.Lock()
        self.waiting: dict[int, list[int]] = {}
        self.timer: threading.Timer | None = None
        os.register_at_fork(after_in_child=self.reset_after_fork)
        # A short-lived process (a management command, a script) sends what it gathered.
        atexit.register(self.flush)

    def add(self, by_key: Mapping[int, Iterable[int]]) -> None:
        if self.delay() <= 0:
            self.send([list(ids) for ids in by_key.values() if ids])
            return
        size = self.batch()
        full: list[list[int]] = []
        with self.lock:
            for key, ids in by_key.items():
                waiting = self.waiting.setdefault(key, [])
                waiting.extend(ids)
                while len(waiting) >= size:
                    full.append(waiting[:size])
                    del waiting[:size]
            if self.timer is None and any(self.waiting.values()):
                self.timer = threading.Timer(self.delay(), self.flush)
                self.timer.daemon = True
                self.timer.start()
        if full:
            self.send(full)

    def flush(self) -> None:
        with self.lock:
            taken, self.waiting, self.timer = self.waiting, {}, None
        chunks = [ids for ids in taken.values() if ids]
        if chunks:
            self.send(chunks)

    def reset_after_fork(self) -> None:
        # A forked child inherits the parent's gathered ids (the parent sends them) and maybe
        # a held lock, but not the timer's thread.
        self.lock = threading.Lock()
        self.waiting = {}
        self.timer = None

"""The ingest writer process: stores the groups the web processes send it, several in one
transaction (destinations/ingest/writer_link.py says why it exists).

It reads whatever frames have arrived on its links, stores their writes together as one group
(as a web process's writer does with its own requests' writes), and answers each link with its
writes' outcomes once the transaction has committed, so a web process still answers 200 only for
durable events. It stops once every web process has closed its link: a web process that is
stopping still finishes the requests it has read, and they need the writer until the end.
"""

from __future__ import annotations

import logging
import pickle
import select
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection

from destinations.ingest.group_commit import PendingWrite, commit_here
from destinations.ingest.writer_link import (
    decode_writes,
    encode_results,
    recv_frame,
    send_frame,
)

logger = logging.getLogger(__name__)

# With nothing to store for this long, the database connection is given back.
IDLE_SECONDS = 1.0


@dataclass
class Arrived:
    """A frame's writes and the link to answer on."""

    link: socket.socket
    writes: list[PendingWrite]


def serve(links: Sequence[socket.socket]) -> None:
    """Store what arrives on ``links`` until all of them are closed."""
    open_links = {link.fileno(): link for link in links}
    for link in links:
        link.setblocking(True)
    poller = select.poll()
    for fd in open_links:
        poller.register(fd, select.POLLIN)
    last_write = time.monotonic()
    while open_links:
        ready = poller.poll(IDLE_SECONDS * 1000)
        if not ready:
            if time.monotonic() - last_write >= IDLE_SECONDS:
                connection.close()
            continue
        arrived: list[Arrived] = []
        messages = 0
        for fd, _events in ready:
            link = open_links[fd]
            # One frame per link and round: a web process sends its next group only once
            # this one is answered.
            try:
                writes = decode_writes(recv_frame(link))
            except (OSError, pickle.UnpicklingError, ValueError, EOFError):
                poller.unregister(fd)
                del open_links[fd]
                link.close()
                continue
            arrived.append(Arrived(link, writes))
            messages += sum(len(write.messages) for write in writes)
        if not arrived:
            continue
        store_arrived(arrived, messages)
        last_write = time.monotonic()


def store_arrived(arrived: list[Arrived], messages: int) -> None:
    """Store the frames' writes in one transaction if they fit in a group, else frame by frame,
    and answer each link."""
    if messages <= settings.INGEST_GROUP_MAX_MESSAGES:
        commit_here([write for frame in arrived for write in frame.writes])
    else:
        for frame in arrived:
            commit_here(frame.writes)
    for frame in arrived:
        try:
            send_frame(frame.link, encode_results(frame.writes))
        except OSError:
            # The web process went after sending (killed mid-request): what it sent is
            # stored, and its clients, never answered, send it again.
            logger.warning("ingest writer process: a web process left before its answer")

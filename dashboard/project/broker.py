"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu creates a message file under its final name and then writes it, so a worker polling the
folder can take the file while it is still empty, fail to decode it and stop. Here a message is
written under a name the consumer ignores and renamed into place (an atomic rename on POSIX), so
a consumer only ever sees whole messages. It also has no host, so kombu does not warn that none
was given.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # Zero-padded nanoseconds: the consumer takes files in name order, which is then the
        # order they were sent in (milliseconds alone tie, and the uuid then decides).
        name = f"{time.monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # Not "<queue>.msg" at the end: the consumer skips it until it is renamed.
        partial = final + ".partial"
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel

    @property
    def default_connection_params(self) -> dict[str, Any]:
        # A folder has no host. kombu's virtual transports default to "localhost", and every
        # connection made from ``filesystem://`` (no host in it) then logged "No hostname was
        # supplied. Reverting to default 'localhost'": four times at each start.
        return {"port": self.default_port}


def register() -> None:
    """``filesystem://`` broker URLs use this transport."""
    TRANSPORT_ALIASES["filesystem"] = "dashboard.project.broker:Transport"

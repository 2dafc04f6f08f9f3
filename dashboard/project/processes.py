"""Child processes of the start command."""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def stop_with_parent() -> None:
    """For ``preexec_fn``. Linux: the child is sent SIGTERM when its parent dies, however it
    dies (even SIGKILL), so no web server or worker outlives the start command. Elsewhere the
    command's own stop() is all there is."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass

"""gunicorn configuration the tests add to ``start``'s command line: each worker process, once
it has loaded the app, leaves a file named after its pid in ``SWITCHBOARD_TEST_READY_DIR``, so a
test starts sending only when every process takes requests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def post_worker_init(worker: Any) -> None:
    Path(os.environ["SWITCHBOARD_TEST_READY_DIR"], str(worker.pid)).touch()

"""A web process loads what its first requests need before it serves (dashboard.project.warmup).

Each case runs in a fresh interpreter: this test process has long since loaded everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Settings up, the app loaded as the web server loads it; then the modules of interest before
# and after warm_up(), and how long it took.
PROBE = """
import json, os, sys, time
import django
django.setup()
from django.core.servers.basehttp import get_internal_wsgi_application
get_internal_wsgi_application()
from django.urls import get_resolver
watched = ("redis", "kombu.transport.redis")
def loaded():
    return {**{name: name in sys.modules for name in watched}, "urls": get_resolver()._populated}
before = loaded()
from dashboard.project.warmup import warm_up
started = time.monotonic()
warm_up()
after = loaded()
print(json.dumps({"before": before, "after": after, "seconds": time.monotonic() - started}))
"""


def probe(tmp_path: Path, **settings: str) -> dict[str, dict[str, bool] | float]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_URL", "CACHE_URL", "CELERY_", "SWITCHBOARD"))
    }
    env |= {
        "DJANGO_SETTINGS_MODULE": "dashboard.project.settings",
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        **settings,
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    result: dict[str, dict[str, bool] | float] = json.loads(done.stdout.decode().splitlines()[-1])
    return result


def test_warm_up_loads_the_redis_client_and_broker_transport_without_connecting(
    tmp_path: Path,
) -> None:
    # Nothing listens on port 1: a warm-up that connected would fail or hang there.
    unreachable = "redis://127.0.0.1:1/0"
    result = probe(tmp_path, CACHE_URL=unreachable, CELERY_BROKER_URL=unreachable)
    assert result["before"] == {
        "redis": False,
        "kombu.transport.redis": False,
        "urls": False,
    }
    assert result["after"] == {
        "redis": True,
        "kombu.transport.redis": True,
        "urls": True,
    }


def test_warm_up_in_the_embedded_default_loads_the_urls(tmp_path: Path) -> None:
    result = probe(tmp_path)
    after = result["after"]
    assert isinstance(after, dict)
    assert after["urls"] is True
    assert after["redis"] is False  # no Redis configured: nothing of it is loaded


def test_a_failing_step_is_left_to_the_first_request(tmp_path: Path) -> None:
    # A broker URL whose transport does not exist: that step fails, the others still run and
    # the process goes on to serve.
    result = probe(
        tmp_path, CACHE_URL="redis://127.0.0.1:1/0", CELERY_BROKER_URL="nosuchtransport://x"
    )
    after = result["after"]
    assert isinstance(after, dict)
    assert after["redis"] is True
    assert after["kombu.transport.redis"] is False

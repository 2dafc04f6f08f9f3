"""The app's settings and Django: the environment a bench gives the app, Django loaded in a
bench process, and ``manage.py`` run to completion."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

from measure.paths import ROOT

NO_LIMIT = 1_000_000_000  # a rate limit (per second or per minute) that holds nothing back

# The app's configuration from the environment: a bench sets what it measures itself, so
# nothing leaks in from the shell that ran it.
APP_SETTINGS = (
    "DATABASE_URL",
    "CACHE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_DEBUG",
    "SWITCHBOARD",
    "DELIVERY_",
    "REPLAY_",
    "AUDIENCE_",
    "JOB_",
)


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment (this process's by default) without the app's configuration."""
    env = dict(os.environ) if env is None else env
    return {k: v for k, v in env.items() if not k.startswith(APP_SETTINGS)}


def django_setup() -> None:
    """Django in this process, with the settings the environment gives now."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.project.settings")
    import django

    django.setup()


def load_app() -> None:
    """Django in a bench process that is not one of the app's, for the app's own constants
    (imported, never copied): with none of the shell's configuration and a scratch data
    directory for the keys settings generate (never the checkout's var/). Settings are read
    once, here; the environment is then put back as it was."""
    saved = dict(os.environ)
    scratch = tempfile.mkdtemp(prefix="switchboard-bench-settings-")
    atexit.register(shutil.rmtree, scratch, True)
    os.environ.clear()
    os.environ.update(clean_env(saved) | {"SWITCHBOARD_DATA_DIR": scratch})
    try:
        django_setup()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py ARGS`` run to completion; its output."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout

"""Django settings for Switchboard, read from environment variables only.

Embedded default (no variables set): SQLite in WAL mode and a file-system Celery broker under
``SWITCHBOARD_DATA_DIR`` (``./var``), with a secret key and an encryption key generated there on
first start. Production (``SWITCHBOARD_PRODUCTION=true``) refuses to start without real secrets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from dashboard.project.env import env_bool, env_float, env_int, env_list, env_str, kept_secret
from dashboard.project.queues import replay_queue
from destinations.kinds import KINDS

BASE_DIR = Path(__file__).resolve().parents[2]
DATA_DIR = Path(env_str("SWITCHBOARD_DATA_DIR", str(BASE_DIR / "var"))).resolve()
PRODUCTION = env_bool("SWITCHBOARD_PRODUCTION")
DEBUG = env_bool("DJANGO_DEBUG", default=False)

SECRET_KEY = env_str("SECRET_KEY")
ENCRYPTION_KEY = env_str("SWITCHBOARD_ENCRYPTION_KEY")
# Making the key must work before the key exists: that one command skips the check.
MAKING_KEYS = len(sys.argv) > 1 and sys.argv[1] == "generateencryptionkey"
if PRODUCTION and not MAKING_KEYS:
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("django-insecure"):
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a random value of at least 50 characters in production "
            "(SWITCHBOARD_PRODUCTION=true)."
        )
    if not ENCRYPTION_KEY:
        raise ImproperlyConfigured(
            "SWITCHBOARD_ENCRYPTION_KEY must be set in production: it encrypts destination "
            "API keys at rest. Generate one with: python manage.py generateencryptionkey"
        )
else:
    SECRET_KEY = SECRET_KEY or kept_secret(DATA_DIR, "secret_key")
    ENCRYPTION_KEY = ENCRYPTION_KEY or kept_secret(DATA_DIR, "encryption_key", make="fernet")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "destinations",
    # Each destination kind is an app of its own, so its templates and template tags are found.
    *(kind.package for kind in KINDS),
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "dashboard.middleware.ExplainedRefusalsMiddleware",
    "dashboard.middleware.RefuseNulCharactersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "dashboard.middleware.RoleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.middleware.SecurityHeadersMiddleware",
]

ROOT_URLCONF = "dashboard.project.urls"
# What the web server runs; a benchmark points it elsewhere to measure the HTTP stack alone.
WSGI_APPLICATION = env_str("SWITCHBOARD_WSGI_APPLICATION") or "dashboard.project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.role",
            ],
        },
    }
]

# Database: DATABASE_URL (PostgreSQL for scale-out) or the embedded SQLite file.
SQLITE_OPTIONS = {
    # WAL lets readers (the dashboard) work while ingest writes; IMMEDIATE makes a writer take
    # the lock at BEGIN so concurrent writers queue on busy_timeout instead of failing with
    # "database is locked" on lock upgrade.
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
    # A checkpoint (the log's pages copied back into the database file, both synced) is taken
    # by the connection whose commit takes the log past wal_autocheckpoint pages, inside that
    # commit: at SQLite's default of 1,000 pages (4 MB), one ingest batch in three or four
    # paid for it. At 10,000 the log stays under about 40 MB and pages written again and
    # again between two checkpoints are copied once (docs/decisions/0029-ingest-path.md).
    "init_command": (
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
        "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=20000; PRAGMA wal_autocheckpoint=10000;"
    ),
}
_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=600)}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "switchboard.sqlite3"),
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = SQLITE_OPTIONS
    # The test database is a file, not memory, so Celery workers in other processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-switchboard.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Cache: Redis when CACHE_URL is set (every machine shares it); otherwise files in the data
# directory, shared by every process on this machine. Counters (rate limits, failed logins) go to
# Redis too, or else to their own SQLite file: see destinations/counters.py and ADR 0018.
_cache_url = env_str("CACHE_URL")
if _cache_url:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            # Installations sharing one Redis keep their counters and locks apart by prefix.
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX") or "switchboard",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
COUNTERS_PATH = DATA_DIR / "counters.sqlite3"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Files served at the site's root, before login: /favicon.ico, which browsers and tools ask for.
WHITENOISE_ROOT = BASE_DIR / "dashboard" / "root"
STORAGES = {
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG or not PRODUCTION:
    # Serve from app folders without collectstatic in the embedded default and tests.
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    WHITENOISE_USE_FINDERS = True
    STATIC_ROOT = DATA_DIR / "static"
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# No inline scripts or styles anywhere: every script and stylesheet is a static file.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'; "
    "object-src 'none'"
)
# Failed logins: after this many for one user name from one address, wait out the window.
LOGIN_MAX_FAILURES = env_int("LOGIN_MAX_FAILURES", 5)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if env_bool("SWITCHBOARD_BEHIND_HTTPS_PROXY"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Ingest reads its own body with its own limit; this only guards the dashboard's forms.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# The web server (dashboard/project/webserver.py), per process: open connections, and how long
# a client may send nothing (mid-request or between keep-alive requests) before it is disconnected.
WEB_CONNECTION_LIMIT = env_int("SWITCHBOARD_WEB_CONNECTIONS", 1000)
WEB_CLIENT_TIMEOUT_SECONDS = env_int("SWITCHBOARD_CLIENT_TIMEOUT_SECONDS", 30)

# Delivery. Every duration is in seconds; each can be set from the environment.
DELIVERY_RETRY_WINDOW_SECONDS = env_int("DELIVERY_RETRY_WINDOW_SECONDS", 4 * 3600)
DELIVERY_TIMEOUT_SECONDS = env_int("DELIVERY_TIMEOUT_SECONDS", 10)
DELIVERY_BACKOFF_BASE_SECONDS = env_float("DELIVERY_BACKOFF_BASE_SECONDS", 5.0)
DELIVERY_BACKOFF_MAX_SECONDS = env_int("DELIVERY_BACKOFF_MAX_SECONDS", 3600)
# A claim not finished within the lease is assumed lost (worker killed) and retried.
DELIVERY_LEASE_SECONDS = env_int("DELIVERY_LEASE_SECONDS", 120)
# How long a row waits for its queued wake-up before the sweeper enqueues it again.
DELIVERY_REQUEUE_AFTER_SECONDS = env_int("DELIVERY_REQUEUE_AFTER_SECONDS", 30)
DELIVERY_SWEEP_SECONDS = env_float("DELIVERY_SWEEP_SECONDS", 5.0)
DELIVERY_TASK_BATCH = env_int("DELIVERY_TASK_BATCH", 100)
# Wake-ups gathered per process before they are sent as tasks (0: send each one at once).
DELIVERY_COALESCE_SECONDS = env_float("DELIVERY_COALESCE_SECONDS", 0.1)
DELIVERY_CONCURRENCY = env_int("DELIVERY_CONCURRENCY", 16)  # HTTP requests in flight per task
DELIVERY_BREAKER_FAILURES = env_int("DELIVERY_BREAKER_FAILURES", 50)
DELIVERY_BREAKER_SECONDS = env_int("DELIVERY_BREAKER_SECONDS", 600)
# Webhook URLs on private, loopback or link-local addresses are refused (SSRF) unless allowed.
ALLOW_PRIVATE_URLS = env_bool("SWITCHBOARD_ALLOW_PRIVATE_URLS", default=False)
# A running job with no heartbeat for this long (its worker died) is queued again.
JOB_STALE_SECONDS = env_int("JOB_STALE_SECONDS", 120)

# User conflicts: how long a merge can be undone from the audit log.
MERGE_UNDO_DAYS = env_int("MERGE_UNDO_DAYS", 30)

# Celery. The embedded default's broker is a folder (kombu's filesystem transport): no server.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = DATA_DIR / "broker"
    _queue_dir.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
        # The folder is polled: once a second by default adds up to a second to every delivery.
        "polling_interval": 0.2,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
# Installations sharing one broker keep apart by queue name.
CELERY_TASK_DEFAULT_QUEUE = env_str("SWITCHBOARD_QUEUE", "celery")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Enqueueing happens after the ingest commit: a broker that is down must not hold the response
# for long. The rows are in the database; the sweeper enqueues them later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# Audiences: users touched by ingest are gathered this long per process, then re-evaluated by a
# worker in tasks of up to this many; time windows are re-checked every AUDIENCE_WINDOW_SECONDS.
AUDIENCE_COALESCE_SECONDS = env_float("AUDIENCE_COALESCE_SECONDS", 0.5)
AUDIENCE_TASK_BATCH = env_int("AUDIENCE_TASK_BATCH", 500)
AUDIENCE_WINDOW_SECONDS = env_float("AUDIENCE_WINDOW_SECONDS", 300)

CELERY_BEAT_SCHEDULE = {
    "sweep-deliveries": {"task": "destinations.sweep", "schedule": DELIVERY_SWEEP_SECONDS},
    "audience-windows": {
        "task": "destinations.audience_windows",
        "schedule": AUDIENCE_WINDOW_SECONDS,
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # "Task queue depth is N" for each request that waits for a thread: no news when busy.
        "waitress.queue": {"level": "ERROR"},
    },
}

# Replays (destinations/replay): their own queue, served by their own worker process, so live
# delivery never waits behind one; each takes at most REPLAY_RATE_SHARE of the destination's rate
# limit. A replay walks history in REPLAY_LANES lanes (by user) of REPLAY_PAGE events at a time.
REPLAY_QUEUE = replay_queue(CELERY_TASK_DEFAULT_QUEUE)
CELERY_TASK_ROUTES = {"destinations.run_replay": {"queue": REPLAY_QUEUE}}
# One lane by default: a replay's worker is one process, and more lanes only add write
# transactions competing with live ingest (measured: same throughput, worse live latency).
REPLAY_LANES = env_int("REPLAY_LANES", 1)
REPLAY_PAGE = env_int("REPLAY_PAGE", 500)
REPLAY_RATE_SHARE = env_float("REPLAY_RATE_SHARE", 0.5)
# A replay waits between pages while the oldest live delivery of the last seconds has been
# waiting longer than this (live traffic first).
REPLAY_LIVE_LAG_SECONDS = env_float("REPLAY_LIVE_LAG_SECONDS", 0.5)

# Ingest (docs/decisions/0029-ingest-path.md): a web process's requests hand their messages to
# its writer threads; a writer stores whatever has arrived (at most INGEST_GROUP_MAX_MESSAGES)
# in one transaction. A request waits at most INGEST_WRITER_TIMEOUT_SECONDS for it, then is told
# to retry (503); its messageIds make the retry safe.
INGEST_GROUP_COMMIT = env_bool("INGEST_GROUP_COMMIT", True)
INGEST_GROUP_MAX_MESSAGES = env_int("INGEST_GROUP_MAX_MESSAGES", 1000)
INGEST_WRITER_TIMEOUT_SECONDS = env_float("INGEST_WRITER_TIMEOUT_SECONDS", 60.0)
# Writer threads per web process; 0: the default, one.
INGEST_WRITERS = env_int("INGEST_WRITERS", 0)
# One writer process stores the groups of all the web processes that `start` runs; on by
# default on SQLite, which takes one writer at a time anyway, off on PostgreSQL.
INGEST_WRITER_PROCESS = env_bool(
    "INGEST_WRITER_PROCESS", DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
)

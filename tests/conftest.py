"""Fixtures shared by every folder: a clean state per test, a source and an ingest client,
members and a signed-in staff client, the stand-ins and destinations on them, real workers,
and the Segment SDK. Helpers that are not fixtures are in ``tests/helpers``."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import segment.analytics.request as segment_request
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from segment.analytics.client import Client as SegmentClient

from dashboard.members import set_role_groups
from dashboard.project.celery import app
from dashboard.project.queues import replay_queue
from destinations import dispatch
from destinations.counters import clear_counters
from destinations.delivery.routing import forget_cached_destinations
from destinations.delivery.services import destination_create
from destinations.demo import DEMO_FEATURES, DEMO_KANA_KEY, DEMO_REFINER_KEY
from destinations.identity.suppression import forget_cached_suppressions
from destinations.ingest.auth import forget_cached_sources
from destinations.models import Destination, Source
from destinations.sources import source_create
from destinations.standins.kana import FakeKana, serve_fake_kana
from destinations.standins.refiner import FakeRefiner, serve_fake_refiner
from tests.helpers.ingest import IngestPost, basic
from tests.helpers.members import MakeMember
from tests.helpers.worker import TEST_DELIVERY_ENV, TEST_QUEUE, StartWorker, Worker

# Property-based tests: a few dozen examples each in CI; HYPOTHESIS_PROFILE=nightly for a long
# run (README, "Run the tests"). Examples share the test's database, so the
# function-scoped fixture check does not apply: each example uses ids of its own.
hypothesis_settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "nightly",
    max_examples=2500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run
# beside one unless told the thread is still synchronous (it is: Playwright only awaits there).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


# --- the session and each test's state ------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _own_task_queue() -> None:
    app.conf.task_default_queue = TEST_QUEUE
    app.conf.task_routes = {dispatch.RUN_REPLAY: {"queue": replay_queue(TEST_QUEUE)}}


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Close sessions left open by live-server threads and workers, so PostgreSQL can drop the
    test database at the end."""
    yield
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness costs half a second per login; tests need no such cost.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _private_urls_allowed(settings: Any) -> None:
    # The fake Refiner, Kana and webhook receivers listen on loopback, which the address guard
    # refuses by default; tests of the guard itself turn it back off.
    settings.ALLOW_PRIVATE_URLS = True


@pytest.fixture(autouse=True)
def _fresh_ingest_state() -> Iterator[None]:
    cache.clear()
    clear_counters()
    forget_cached_sources()
    yield
    cache.clear()
    clear_counters()
    forget_cached_sources()


@pytest.fixture(autouse=True)
def _fresh_routing_state() -> Iterator[None]:
    forget_cached_destinations()
    forget_cached_suppressions()
    yield
    forget_cached_destinations()
    forget_cached_suppressions()


# --- ingest ---------------------------------------------------------------------------------


@pytest.fixture
def source(db: None) -> Source:
    return source_create(name="Web app")


@pytest.fixture
def post_ingest(client: Client, source: Source) -> IngestPost:
    """POST to /v1/<path> as an SDK would: Basic auth with the source's write key."""

    def post(
        path: str,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        write_key: str | None = None,
        auth: bool = True,
        gzip_body: bool = False,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Any:
        data = raw if raw is not None else orjson.dumps(payload)
        extra: dict[str, str] = dict(headers or {})
        if gzip_body:
            data = gzip.compress(data)
            extra["Content-Encoding"] = "gzip"
        if auth:
            key = source.write_key if write_key is None else write_key
            extra["Authorization"] = basic(key)
        return client.post(f"/v1/{path}", data=data, content_type=content_type, headers=extra)

    return post


@pytest.fixture
def sdk(source: Source, live_server: Any) -> Iterator[SegmentClient]:
    """Segment's Python SDK as an app embeds it, pointed at ingest on the live server; sync
    mode sends each call at once and raises unless ingest answered 200."""
    client = SegmentClient(source.write_key, host=live_server.url, sync_mode=True, max_retries=0)
    yield client
    # The SDK keeps a module-level session; kept-alive sockets would hold a live-server thread.
    segment_request._session.close()


# --- dashboard members ----------------------------------------------------------------------


@pytest.fixture
def make_member(db: None) -> MakeMember:
    """A dashboard member with a role (admin unless told otherwise)."""

    def make(
        username: str = "op", role: str = "admin", password: str = "correct horse battery"
    ) -> User:
        user = User.objects.create_user(username=username, password=password)
        set_role_groups(user, role)
        return user

    return make


@pytest.fixture
def staff_role() -> str:
    """The role ``staff_client`` signs in with; a folder's conftest may ask for another."""
    return "admin"


@pytest.fixture
def staff_member(make_member: MakeMember, staff_role: str) -> User:
    """The member ``staff_client`` is signed in as: ``op``, with ``staff_role``."""
    return make_member(role=staff_role)


@pytest.fixture
def staff_client(client: Client, staff_member: User) -> Client:
    """The test client, signed in as ``staff_member``."""
    client.force_login(staff_member)
    return client


# --- the stand-ins and destinations on them -------------------------------------------------


@pytest.fixture
def fake_refiner() -> Iterator[FakeRefiner]:
    yield from serve_fake_refiner(api_keys={"rk_test"})


@pytest.fixture
def fake_kana() -> Iterator[FakeKana]:
    yield from serve_fake_kana(api_keys={"prv_test"})


@pytest.fixture
def demo_refiner() -> Iterator[FakeRefiner]:
    """A Refiner stand-in with the demo's key, as ``start --demo`` runs it."""
    yield from serve_fake_refiner(api_keys={DEMO_REFINER_KEY}, project_name="Demo project")


@pytest.fixture
def demo_kana() -> Iterator[FakeKana]:
    """A Kana stand-in with the demo's key and features, as ``start --demo`` runs it."""
    for kana in serve_fake_kana(api_keys={DEMO_KANA_KEY}):
        for feature_id, name in DEMO_FEATURES:
            kana.add_feature(feature_id, name)
        yield kana


@pytest.fixture
def refiner_destination(transactional_db: None, fake_refiner: FakeRefiner) -> Destination:
    return destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
    )


@pytest.fixture
def kana_destination(transactional_db: None, fake_kana: FakeKana) -> Destination:
    return destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": fake_kana.base_url},
        secret_values={"api_key": "prv_test"},
    )


# --- workers --------------------------------------------------------------------------------


@pytest.fixture
def worker_env() -> dict[str, str]:
    """What every worker of a test gets on top of TEST_DELIVERY_ENV; a folder's conftest may
    ask for more."""
    return {}


@pytest.fixture
def start_worker(
    transactional_db: None, settings: Any, worker_env: dict[str, str]
) -> Iterator[StartWorker]:
    """Start real Celery workers (each with its sweeper) in other processes, on the test
    database, with TEST_DELIVERY_ENV, ``worker_env`` and the overrides given; all are stopped
    at the end. This process gets the same DELIVERY_* values: ingest here computes each
    delivery's first attempt and retry window, operator services sweep and resume with them."""
    started: list[Worker] = []

    def start(concurrency: int = 4, **overrides: str) -> Worker:
        env = {**worker_env, **overrides}
        for name, value in {**TEST_DELIVERY_ENV, **env}.items():
            if name.startswith("DELIVERY_"):
                setattr(settings, name, float(value) if "." in value else int(value))
        worker = Worker(env=env, concurrency=concurrency)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def worker(start_worker: StartWorker) -> Worker:
    """A real Celery worker and sweeper in another process, on the test database."""
    return start_worker()

"""Limits that must hold however many processes count against them, through the real web server
(two web processes, as ``start`` runs them): the login throttle and the ingest
rate limit; and the counters and the cache beneath them, across forked processes."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
import requests
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.cache import cache
from requests.adapters import HTTPAdapter

from destinations.counters import add_to_counters
from destinations.models import Event, Source
from tests.helpers.ingest import basic, start_of_a_fresh_second
from tests.helpers.members import MakeMember
from tests.helpers.server import WebServer

PASSWORD = "the right passphrase"
LOGGED_IN, WRONG, THROTTLED = "logged in", "wrong password", "throttled"


class QuickPBKDF2(PBKDF2PasswordHasher):
    """The server's own hasher (the hash names its iterations), made cheap for tests."""

    iterations = 1000


@pytest.fixture
def account(transactional_db: None, make_member: MakeMember) -> Any:
    def make(username: str) -> Any:
        user = make_member(username=username)
        hasher = QuickPBKDF2()
        user.password = hasher.encode(PASSWORD, hasher.salt())
        user.save(update_fields=["password"])
        return user

    return make


class FromAddress(HTTPAdapter):
    """Connects from another loopback address: the server sees another client address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def log_in(
    server: WebServer,
    username: str,
    password: str,
    *,
    from_address: str | None = None,
    headers: dict[str, str] | None = None,
) -> str:
    """The login form as a browser fills it: GET for the CSRF cookie, then POST. A new session,
    so a new connection, which either of the server's processes may take."""
    with requests.Session() as session:
        if from_address:
            session.mount("http://", FromAddress(from_address))
        session.headers.update(headers or {})
        page = session.get(f"{server.base_url}/login/", timeout=30)
        assert page.status_code == 200, page.text
        response = session.post(
            f"{server.base_url}/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            allow_redirects=False,
            timeout=30,
        )
    if response.status_code == 302 and response.headers["Location"] == "/":
        return LOGGED_IN
    text = response.text
    if "Too many failed logins for this account from your address. Try again in" in text:
        return THROTTLED
    if "Please enter a correct username and password" in text:
        return WRONG
    raise AssertionError(f"unexpected answer {response.status_code}: {text[:2000]}")


def test_wrong_passwords_in_turn_lock_the_pair_out(web_server: WebServer, account: Any) -> None:
    account("ada")
    limit = settings.LOGIN_MAX_FAILURES
    assert [log_in(web_server, "ada", "wrong") for _ in range(limit)] == [WRONG] * limit
    assert log_in(web_server, "ada", PASSWORD) == THROTTLED
    assert log_in(web_server, "ADA ", PASSWORD) == THROTTLED  # the same name, as typed


def test_wrong_passwords_at_once_get_only_the_limit_checked(
    web_server: WebServer, account: Any
) -> None:
    account("bea")
    limit = settings.LOGIN_MAX_FAILURES
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: log_in(web_server, "bea", "wrong"), range(10)))
    assert sorted(results) == sorted([WRONG] * limit + [THROTTLED] * (10 - limit))
    assert log_in(web_server, "bea", PASSWORD) == THROTTLED


def test_another_address_or_another_name_is_not_locked_out(
    web_server: WebServer, account: Any
) -> None:
    account("cleo")
    account("dan")
    for _ in range(settings.LOGIN_MAX_FAILURES):
        assert log_in(web_server, "cleo", "wrong") == WRONG
    assert log_in(web_server, "cleo", PASSWORD) == THROTTLED
    assert log_in(web_server, "cleo", PASSWORD, from_address="127.0.0.2") == LOGGED_IN
    assert log_in(web_server, "dan", PASSWORD) == LOGGED_IN
    assert log_in(web_server, "cleo", PASSWORD) == THROTTLED


@pytest.fixture(scope="module")
def proxied_web_server(django_db_setup: None) -> Iterator[WebServer]:
    server = WebServer(workers=2, env={"SWITCHBOARD_BEHIND_HTTPS_PROXY": "true"}).start()
    yield server
    server.stop()


def test_behind_a_proxy_the_address_is_the_last_forwarded_one(
    proxied_web_server: WebServer, account: Any
) -> None:
    """The proxy appends the address it saw; what comes before is whatever the client sent, so
    changing it does not get round the lock."""
    account("eve")
    for attempt in range(settings.LOGIN_MAX_FAILURES):
        forwarded = {"X-Forwarded-For": f"203.0.113.{attempt}, 198.51.100.7"}
        assert log_in(proxied_web_server, "eve", "wrong", headers=forwarded) == WRONG
    forwarded = {"X-Forwarded-For": "203.0.113.99, 198.51.100.7"}
    assert log_in(proxied_web_server, "eve", PASSWORD, headers=forwarded) == THROTTLED
    elsewhere = {"X-Forwarded-For": "198.51.100.8"}
    assert log_in(proxied_web_server, "eve", PASSWORD, headers=elsewhere) == LOGGED_IN


# 5: every request asks the shared counter; 100: each process leases two requests at a time.
@pytest.mark.parametrize(("limit", "burst"), [(5, 40), (100, 300)])
def test_the_ingest_rate_limit_holds_across_processes(
    web_server: WebServer, transactional_db: None, source: Source, limit: int, burst: int
) -> None:
    source.rate_limit_per_second = limit
    source.save()

    def send(message_id: str) -> int:
        # No session: each request on a new connection, which either process may take.
        response = requests.post(
            f"{web_server.base_url}/v1/track",
            data=orjson.dumps({"userId": "u1", "event": "Clicked", "messageId": message_id}),
            headers={"Authorization": basic(source.write_key), "Content-Type": "application/json"},
            timeout=30,
        )
        return response.status_code

    accepted = 0
    for round_ in range(3):
        start_of_a_fresh_second()
        started = time.time()
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(send, [f"b{round_}-{i}" for i in range(burst)]))
        finished = time.time()
        # Every request was counted in a second between these two: each second allows `limit`.
        windows = int(finished) - int(started) + 1
        assert set(statuses) <= {200, 429}, statuses
        assert 0 < statuses.count(200) <= limit * windows, (statuses, windows)
        if burst > limit * windows:
            assert 429 in statuses
        accepted += statuses.count(200)
    assert Event.objects.filter(source=source).count() == accepted


def add_many(times: int) -> None:
    for _ in range(times):
        add_to_counters({"shared-counter": 1}, ttl_seconds=60)


def test_counters_add_up_across_processes() -> None:
    forked = multiprocessing.get_context("fork")
    processes = [forked.Process(target=add_many, args=(200,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert add_to_counters({"shared-counter": 1}, ttl_seconds=60)["shared-counter"] == 801


def set_in_cache() -> None:
    cache.set("set-by-another-process", "hello", timeout=60)


def test_the_cache_is_shared_by_processes() -> None:
    process = multiprocessing.get_context("fork").Process(target=set_in_cache)
    process.start()
    process.join(60)
    assert process.exitcode == 0
    assert cache.get("set-by-another-process") == "hello"

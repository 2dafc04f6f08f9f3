"""Browser fixtures: one Debian chromium per session, a fresh context per test, a logged-in page.

Every page is opened against pytest-django's ``live_server`` (a real threaded WSGI server on a
transactional database), so what the browser sees is what an operator would see.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import Browser, Page, expect, sync_playwright

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    # Containers run as root without user namespaces and with a tiny /dev/shm.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Nothing may reach out to Google: the test host has no route out and should not wait on one.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Long enough for the Events table's one-second htmx poll to come round a few times.
expect.set_options(timeout=5_000)


@dataclass(frozen=True)
class Operator:
    username: str
    password: str


def artifact_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Keep each phase's report on the item so fixture teardown can tell whether the test failed.
    report: pytest.TestReport = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(node: pytest.Item) -> bool:
    return any(
        getattr(getattr(node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, live_server: Any, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        yield page
    finally:
        if _failed(request.node):
            page.screenshot(path=artifact_path(request.node.name), full_page=True)
        context.close()


@pytest.fixture
def admin_operator(transactional_db: None) -> Operator:
    operator = Operator(username="operator", password="switchboard-browser-test")
    get_user_model().objects.create_superuser(
        username=operator.username, email="operator@example.com", password=operator.password
    )
    return operator


@pytest.fixture
def logged_in_page(page: Page, admin_operator: Operator) -> Page:
    # Through the real form, so a broken login template or redirect fails here, not later.
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.get_by_label("Username").fill(admin_operator.username)
    page.get_by_label("Password").fill(admin_operator.password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".topbar .who")).to_have_text(admin_operator.username)
    return page

"""The foundation flow in a real browser: create a source, point the SDK at it, see the event.

The SDK is configured only from what the source page renders, so a wrong host or write key in
the snippet fails this test even though the database holds the right values.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import segment.analytics.request as segment_request
from playwright.sync_api import Page, expect
from segment.analytics import Client

from tests.browser.conftest import artifact_path

pytestmark = pytest.mark.browser

SOURCE_NAME = "Checkout service"
EVENT_NAME = "Order Completed"
USER_ID = "u-browser-ada"


@pytest.fixture
def segment_errors() -> Iterator[list[tuple[Exception, list[dict[str, Any]]]]]:
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    yield errors
    # The SDK keeps a module-level session; kept-alive sockets would hold a live-server thread.
    segment_request._session.close()


def snippet_setting(snippet: str, name: str) -> str:
    found = re.search(rf'^analytics\.{name} = "([^"]+)"$', snippet, re.MULTILINE)
    assert found, f"analytics.{name} is missing from the snippet:\n{snippet}"
    return found.group(1)


def create_source(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sources").click()
    page.get_by_role("link", name="New source").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Rate limit (requests/second)").fill("25")
    page.get_by_role("button", name="Create source").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(name)
    expect(page.get_by_role("status")).to_contain_text(f"Source '{name}' created")


def test_operator_sees_an_sdk_event_from_a_new_source(
    logged_in_page: Page,
    live_server: Any,
    segment_errors: list[tuple[Exception, list[dict[str, Any]]]],
) -> None:
    page = logged_in_page
    create_source(page, SOURCE_NAME)

    snippet = page.locator("#snippet-python").inner_text()
    host = snippet_setting(snippet, "host")
    write_key = snippet_setting(snippet, "write_key")
    assert host == live_server.url
    expect(page.locator("#write-key")).to_have_text(write_key)
    expect(page.locator("#snippet-node")).to_contain_text(f'writeKey: "{write_key}"')

    # Open Events before sending so the row has to arrive through the live htmx refresh.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Events").click()
    table = page.locator("#event-table")
    expect(table).to_contain_text("No events.")

    marker = uuid.uuid4().hex
    client = Client(
        write_key,
        host=host,
        on_error=lambda error, batch: segment_errors.append((error, batch)),
        max_retries=0,
    )
    queued, message = client.track(
        USER_ID, EVENT_NAME, {"marker": marker, "total": 42.5, "currency": "EUR"}
    )
    client.flush()
    client.join()
    assert queued is True
    assert segment_errors == []
    message_id = message["messageId"]

    row = table.locator("tbody tr").filter(has_text=EVENT_NAME)
    expect(row).to_have_count(1)
    expect(row).to_be_visible()
    expect(row.locator("td").nth(1)).to_have_text("track")
    expect(row.locator("td").nth(3)).to_have_text(USER_ID)
    expect(row.locator("td").nth(4)).to_have_text(SOURCE_NAME)
    page.screenshot(path=artifact_path("events-list"), full_page=True)

    row.get_by_role("link").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(EVENT_NAME)
    facts = page.locator("dl.facts")
    expect(facts.locator("dt:has-text('Message id') + dd")).to_have_text(message_id)
    expect(facts.locator("dt:has-text('User id') + dd")).to_have_text(USER_ID)
    expect(facts.locator("dt:has-text('Source') + dd")).to_have_text(SOURCE_NAME)
    raw_json = page.locator("#raw-json")
    expect(raw_json).to_contain_text(f'"marker": "{marker}"')

    raw = json.loads(raw_json.inner_text())
    assert raw["messageId"] == message_id
    assert raw["userId"] == USER_ID
    assert raw["event"] == EVENT_NAME
    assert raw["properties"] == {"marker": marker, "total": 42.5, "currency": "EUR"}
    assert raw["context"]["library"]["name"] == "analytics-python"
    # The write key is authentication, not event data: it must not be stored with the event.
    assert "writeKey" not in raw

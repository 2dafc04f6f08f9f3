"""Refiner webhooks in a real browser: make a receiver, copy its URL and token, let "Refiner"
post a completed survey and find it in the receiver's log and on the user's page; add an
outbound webhook with a generated signing secret, Send test to a local receiver that verifies
it, and watch a survey delivered there by a real worker; read Refiner's contacts page by page,
and make an API call in the console."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from destinations.models import Destination, Event, Profile
from destinations.standins.refiner import FakeRefiner, sample_webhook_payload, send_webhook
from tests.browser.conftest import artifact_path
from tests.helpers.webhook_receiver import WebhookReceiver
from tests.helpers.worker import Worker

pytestmark = pytest.mark.browser

DELIVERY_TIMEOUT_MS = 20_000
# Refiner contacts: user id, name, account, segments; first and last seen a day apart each.
PEOPLE = [
    ("u-ada", "Ada Lovelace", "Initech", ("Power users",)),
    ("u-grace", "Grace Hopper", "Globex", ("Power users", "On trial")),
    ("u-alan", "Alan Turing", "Initech", ("Power users",)),
    ("u-katherine", "Katherine Johnson", None, ("On trial",)),
    ("u-linus", "Linus Torvalds", "Globex", ()),
]


@pytest.fixture
def ops_receiver() -> Iterator[WebhookReceiver]:
    # The signing secret is set once the dashboard has generated it.
    with WebhookReceiver(token="ops-bearer-token") as receiver:
        yield receiver


def main_nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def make_receiver(page: Page, live_server: Any) -> tuple[str, str]:
    main_nav(page, "Webhooks")
    expect(page.get_by_text("No Refiner webhooks yet.")).to_be_visible()
    page.get_by_role("link", name="New receiver").first.click()
    page.get_by_label("Webhook Name").fill("NPS")
    page.get_by_label("Trigger Event").select_option(label="Survey Completed")
    page.get_by_role("button", name="Create receiver").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Receiver NPS created")
    expect(page.locator(".lead")).to_have_text(
        "In Refiner: Integrations > Webhooks > add webhook; paste the URL and token."
    )
    url = page.locator("#destination-url").input_value()
    token = page.locator("#auth-token").input_value()
    assert re.fullmatch(re.escape(live_server.url) + r"/hooks/refiner/[0-9a-f-]{36}", url)
    assert token.startswith("rwh_")
    page.screenshot(path=artifact_path("refiner-receiver-token"), full_page=True)
    # Copy puts the exact value on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    copy = page.locator('button[data-copy-value="#auth-token"]')
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    return url, token


def test_refiner_webhooks_outbound_webhooks_and_refiner_data(
    logged_in_page: Page,
    live_server: Any,
    worker: Worker,
    fake_refiner: FakeRefiner,
    refiner_destination: Destination,
    ops_receiver: WebhookReceiver,
) -> None:
    page = logged_in_page

    # --- a receiver, and Refiner posting a completed survey to it ---
    url, token = make_receiver(page, live_server)
    answer = send_webhook(url, sample_webhook_payload(), token=token)
    assert answer.status == 200, answer.body
    page.get_by_role("link", name="Done: open the receiver").click()
    expect(page.locator("#token-hint")).to_have_text(f"••••{token[-4:]}")
    expect(page.locator("body")).not_to_contain_text(token)
    log = page.locator("#call-log")
    first_call = log.locator("tbody.call").first
    expect(first_call.locator(".badge")).to_have_text("accepted")
    expect(first_call).to_contain_text("stored as 'Survey Completed' for user-123")
    first_call.get_by_text("Payload").click()
    expect(first_call.locator("pre")).to_contain_text('"triggered_event": "Survey Completed"')
    page.screenshot(path=artifact_path("refiner-receiver"), full_page=True)

    first_call.get_by_role("link", name=re.compile(r"^Event #\d+$")).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Survey Completed")
    page.locator("dl.facts a[href^='/users/']").click()  # the event's user
    profile = Profile.objects.get(user_id="user-123")
    expect(page).to_have_url(re.compile(rf"/users/{profile.pk}/$"))
    traits = page.locator("section.card").filter(has_text="Traits").locator("pre")
    expect(traits).to_contain_text('"refiner_answers"')
    expect(traits).to_contain_text('"why": "fast"')

    # --- an outbound webhook with a generated signing secret, tested, then delivered ---
    main_nav(page, "Webhooks")
    page.get_by_role("link", name=re.compile("To your URLs")).click()
    expect(page.get_by_text("No outbound webhooks yet.")).to_be_visible()
    page.get_by_role("link", name="New outbound webhook").first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New Webhook destination")
    secret_field = page.get_by_label("Signing secret")
    prefilled = secret_field.input_value()
    assert prefilled.startswith("whsec_")
    page.get_by_role("link", name="Generate signing secret").click()
    expect(page.get_by_label("Signing secret")).not_to_have_value(prefilled)
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    ops_receiver.secret = secret
    page.get_by_label("Name", exact=True).fill("Ops")
    page.get_by_label("Destination URL").fill(ops_receiver.url)
    page.get_by_label("Trigger Event").select_option(label="Survey completed")
    page.get_by_label("Secret Auth-Token").fill("ops-bearer-token")
    page.get_by_role("button", name="Send test").click()
    expect(page.locator("#test-result")).to_contain_text("Test event accepted: HTTP 200")
    [test_event] = ops_receiver.verified
    assert test_event["event"] == "Switchboard Test"
    page.screenshot(path=artifact_path("outbound-webhook-form"), full_page=True)
    page.get_by_role("button", name="Create destination").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ops: copy the signing secret")
    expect(page.locator("#new-secret")).to_have_value(secret)
    page.get_by_role("link", name="Done: go to Event delivery").click()
    expect(page.locator("body")).not_to_contain_text(secret)

    answers = {"score": 7, "why": "ok"}
    second = sample_webhook_payload(
        response={"uuid": "resp-2", "completed_at": "2024-05-15T10:00:00Z", "data": answers}
    )
    assert send_webhook(url, second, token=token).status == 200
    [_, delivered] = ops_receiver.wait_for_verified(2, timeout=DELIVERY_TIMEOUT_MS / 1000)
    assert delivered["event"] == "Survey Completed"
    assert delivered["properties"]["score"] == 7
    assert Event.objects.filter(event="Survey Completed").count() == 2
    page.locator("#delivery-stats").get_by_role("link", name="Refresh").click()
    expect(page.locator("#count-delivered")).to_have_text("1", timeout=DELIVERY_TIMEOUT_MS)

    # --- Refiner's contacts, page by page ---
    power = fake_refiner.add_segment("Power users")
    trial = fake_refiner.add_segment("On trial")
    for day, (user_id, name, account, segments) in enumerate(PEOPLE, start=1):
        fake_refiner.add_contact(
            remote_id=user_id,
            email=f"{user_id.removeprefix('u-')}@example.com",
            attributes={"name": name, "plan": "pro" if power.name in segments else "trial"},
            account={"id": account.lower(), "name": account} if account else None,
            segments=[s for s in (power, trial) if s.name in segments],
            first_seen_at=f"2024-03-0{day}T09:00:00Z",
            last_seen_at=f"2024-05-{10 + day}T16:30:00Z",
        )
    Profile.objects.create(user_id="u-grace", email="grace@example.com")
    main_nav(page, "Refiner")
    rows = page.locator("table.contacts tbody tr")
    expect(rows).to_have_count(5)
    page.get_by_label("Order by").select_option(label="Last seen")
    page.get_by_label("Limit").fill("3")
    page.get_by_role("button", name="List contacts").click()
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("Linus Torvalds")
    expect(rows.nth(2)).to_contain_text("Alan Turing")
    page.screenshot(path=artifact_path("refiner-contacts"), full_page=True)
    page.get_by_role("link", name="Next →").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("Grace Hopper")
    expect(rows.nth(0).get_by_role("link", name="u-grace")).to_have_attribute(
        "href", re.compile(r"^/users/\d+/$")
    )
    expect(page).to_have_url(re.compile(r"cursor="))
    expect(page.get_by_role("link", name="First page")).to_be_visible()
    page.get_by_role("link", name="Ada Lovelace").click()
    expect(page.locator("#attributes")).to_contain_text("pro")
    expect(page.locator("#segments")).to_contain_text("Power users")
    page.get_by_role("link", name="← Contacts").click()
    page.get_by_label("Segment UUID").fill(power.uuid)
    page.get_by_role("button", name="List contacts").click()
    expect(rows).to_have_count(3)
    expect(page.locator(".summary")).to_contain_text("3 contacts")

    # --- the API console ---
    page.get_by_role("navigation", name="Refiner").get_by_role("link", name="API console").click()
    page.get_by_label("URL").fill("https://evil.example/steal")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".console-error")).to_contain_text(
        "URL must be relative to the Refiner API, e.g. /contacts"
    )
    page.get_by_label("URL").fill("/contacts")
    page.get_by_label("Query String").fill("page_length=2&order_by=last_seen_at")
    page.get_by_label("Headers").fill("X-Request-Source: switchboard-console")
    page.get_by_role("button", name="Send").click()
    response = page.locator(".console-response")
    expect(response.locator(".status-code")).to_have_text("HTTP 200")
    expect(response.locator("pre")).to_contain_text('"items_count": 5')
    expect(response.locator("pre")).to_contain_text('"display_name": "Linus Torvalds"')
    sent = fake_refiner.requests_to("/contacts")[-1]
    assert sent.header("X-Request-Source") == "switchboard-console"
    assert sent.query == {"page_length": "2", "order_by": "last_seen_at"}
    page.screenshot(path=artifact_path("refiner-console"), full_page=True)

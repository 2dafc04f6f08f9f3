"""The demo as a newcomer meets it, in a real browser: the banner gives the stand-ins' addresses
and the key they accept, a Refiner destination of one's own made with them connects, and the
Refiner pages stay on the destination they read until the operator picks another, which they
then keep across the menu and the API console."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from playwright.sync_api import Page, expect

from destinations.demo import seed_demo
from destinations.standins.refiner import FakeRefiner

pytestmark = pytest.mark.browser


def pick_refiner(page: Page, name: str) -> None:
    page.get_by_label("Refiner destination").select_option(label=name)
    page.get_by_role("button", name="Switch").click()
    expect(page.locator(".pagehead h1 .badge").first).to_have_text(name)


def test_the_banner_gives_the_stand_in_key_and_the_refiner_pages_keep_the_pick(
    logged_in_page: Page, demo_refiner: FakeRefiner
) -> None:
    page = logged_in_page
    demo_refiner.seed_contacts(3)
    seed_demo(refiner_url=demo_refiner.base_url, kana_url="http://127.0.0.1:9/graphql")
    cache.clear()  # the banner's few seconds of cache: the login page filled it
    page.goto("/")
    stand_in = page.locator(".demo-banner #stand-in-refiner")
    expect(stand_in).to_contain_text(demo_refiner.base_url)
    url, key = stand_in.locator("code").all_inner_texts()

    # A destination of one's own, made with what the banner says (its name sorts first).
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Destinations").click()
    page.get_by_role("link", name="New destination").click()
    page.locator("main").get_by_role("link", name="Refiner").click()
    page.get_by_label("Name").fill("Acme Refiner")
    page.get_by_label("Base URL").fill(url)
    page.get_by_label("API Key").fill(key)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text(
        "Connected to Refiner project 'Demo project'"
    )
    page.get_by_role("button", name="Create destination").click()
    expect(page.locator(".messages")).to_contain_text("Destination 'Acme Refiner' created.")

    # The Refiner pages still read the destination they read before it was added.
    main = page.get_by_role("navigation", name="Main")
    main.get_by_role("link", name="Refiner").click()
    expect(page.locator(".pagehead h1 .badge").first).to_have_text("Refiner (demo)")
    rows = page.locator("table.contacts tbody tr")
    expect(rows).to_have_count(3)

    # A pick holds: the menu and the API console open on it.
    pick_refiner(page, "Refiner, wrong key (demo)")
    expect(page.locator("#contact-results")).to_contain_text("API key not valid")
    main.get_by_role("link", name="Refiner").click()
    expect(page.locator(".pagehead h1 .badge").first).to_have_text("Refiner, wrong key (demo)")
    pick_refiner(page, "Acme Refiner")
    expect(rows).to_have_count(3)
    page.goto("/refiner/console/")
    expect(page.locator(".pagehead h1 .badge").first).to_have_text("Acme Refiner")
    page.get_by_label("URL").fill("/contacts")
    page.get_by_role("button", name="Send").click()
    expect(page.locator(".console-response .status-code")).to_have_text("HTTP 200")
    assert demo_refiner.requests_to("/contacts")[-1].header("Authorization") == f"Bearer {key}"


def test_users_search_finds_every_user_id_starting_with_the_term(logged_in_page: Page) -> None:
    page = logged_in_page
    seed_demo(refiner_url="http://127.0.0.1:9/v1", kana_url="http://127.0.0.1:9/graphql")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Users").click()
    page.get_by_label("Search").fill("demo-alan")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.locator("td:first-child")).to_have_text(["demo-alan-2", "demo-alan"])

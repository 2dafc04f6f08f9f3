"""The Overview's panels: destination health, open conflicts and unmapped events linking
to their pages, recent permanent failures, and the empty state."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from destinations.connectors.kana.connector import UNMAPPED
from destinations.models import Delivery, Destination, Profile, Source
from tests.helpers.overview import Seeder, kana, overview_page, refiner
from tests.helpers.pages import text_of

pytestmark = pytest.mark.django_db


def test_destination_health_states(staff_client: Client, source: Source) -> None:
    now = timezone.now()
    healthy, failing, paused, disabled, behind = (
        refiner(name) for name in ("A healthy", "B failing", "C paused", "D disabled", "E behind")
    )
    Destination.objects.filter(pk=healthy.pk).update(
        last_success_at=now, last_error_at=now - timedelta(hours=1), last_error="HTTP 500 once"
    )
    Destination.objects.filter(pk=failing.pk).update(
        last_success_at=now - timedelta(hours=1),
        last_error_at=now,
        last_error="Refiner refused the API key (HTTP 401)",
    )
    Destination.objects.filter(pk=paused.pk).update(
        paused_at=now, paused_reason="failing for 30 minutes: HTTP 503 from Refiner"
    )
    Destination.objects.filter(pk=disabled.pk).update(enabled=False)
    seed = Seeder(source)
    for status in ("pending", "retrying", "sending", "delivered"):
        seed.delivery(behind, status, timedelta(days=20))  # backlog is counted whatever its age
    response = overview_page(staff_client)
    states = {row.destination.name: row.state for row in response.context["report"].destinations}
    assert states == {
        "A healthy": "healthy",
        "B failing": "failing",
        "C paused": "paused",
        "D disabled": "disabled",
        "E behind": "backlog",
    }
    body = text_of(response)
    for destination, state in ((failing, "failing"), (paused, "paused"), (behind, "backlog")):
        assert f'<tr id="health-{destination.pk}" data-state="{state}">' in body
    assert "failing for 30 minutes: HTTP 503 from Refiner" in body
    assert '<strong class="backlog">3</strong>' in body
    assert "Refiner refused the API key (HTTP 401)" in body


def test_open_conflicts_and_unmapped_events_link_to_their_pages(
    staff_client: Client, source: Source
) -> None:
    Profile.objects.create(user_id="a1", email="same@x.io", billing_id="cus_A1")
    Profile.objects.create(user_id="a2", email="same@x.io", billing_id="cus_A2")
    Profile.objects.create(user_id="b1", email="b@x.io")  # no billing id
    mapped, other = kana("Kana"), kana("Kana EU")
    seed = Seeder(source)
    for age in (timedelta(minutes=5), timedelta(hours=2), timedelta(days=3)):
        seed.delivery(mapped, "skipped", age, reason=UNMAPPED)
    seed.delivery(mapped, "skipped", timedelta(minutes=5), reason="no userId")  # not unmapped
    seed.delivery(other, "skipped", timedelta(minutes=5), reason=UNMAPPED)
    response = overview_page(staff_client)
    body = text_of(response)
    assert '<strong id="count-duplicate-emails">1</strong>' in body
    assert '<strong id="count-without-billing-id">1</strong>' in body
    assert 'href="/conflicts/#duplicate-emails-title"' in body
    unmapped = {
        row.destination.name: row.totals.unmapped
        for row in response.context["report"].kana_destinations
    }
    assert unmapped == {"Kana": 2, "Kana EU": 1}
    link = f'<a href="/destinations/{mapped.pk}/unmapped/"><strong>2</strong>'
    assert f'<li id="unmapped-{mapped.pk}">{link}' in body
    week = overview_page(staff_client, "7d").context["report"]
    assert {row.destination.name: row.totals.unmapped for row in week.kana_destinations} == {
        "Kana": 3,
        "Kana EU": 1,
    }


def test_recent_permanent_failures_link_to_samples_and_event(
    staff_client: Client, source: Source
) -> None:
    destination = refiner()
    seed = Seeder(source)
    old = seed.delivery(destination, "failed", timedelta(days=2), reason="too old for 24 h")
    failures = [
        seed.delivery(destination, "failed", timedelta(minutes=30 - n), reason=f"HTTP 40{n % 4}")
        for n in range(12)
    ]
    seed.delivery(destination, "skipped", timedelta(minutes=1), reason="skipped is not failed")
    response = overview_page(staff_client)
    shown = response.context["report"].recent_failures
    assert [d.pk for d in shown] == [d.pk for d in reversed(failures)][:10]
    body = text_of(response)
    newest = failures[-1]
    row = re.search(rf'<tr id="failure-{newest.pk}">(.*?)</tr>', body, re.S)
    assert row is not None
    assert f'href="/destinations/{destination.pk}/?window=24h#errors"' in row.group(1)
    assert f'href="/events/{newest.event_id}/"' in row.group(1)
    assert "HTTP 403" in row.group(1)
    assert "too old for 24 h" not in body and "skipped is not failed" not in body
    # Only failures created in the window are listed.
    Delivery.objects.filter(pk__in=[d.pk for d in failures[:-1]]).delete()
    day = overview_page(staff_client).context["report"].recent_failures
    assert [d.pk for d in day] == [newest.pk]
    week = overview_page(staff_client, "7d").context["report"].recent_failures
    assert [d.pk for d in week] == [newest.pk, old.pk]


def test_empty_overview_invites_to_add_a_destination(staff_client: Client) -> None:
    body = text_of(overview_page(staff_client))
    assert "No destinations yet" in body
    assert 'href="/destinations/new/"' in body
    assert "No permanent failures last 24 hours." in body

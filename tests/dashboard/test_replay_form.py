"""Replay history's form and preview, as an operator uses them: the presets, the numbers per
call type with examples and reasons, narrowing, and every refusal as a form error."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from destinations.connectors.kana.connector import UNMAPPED
from destinations.models import Destination, Event, Job, JobKind, Source
from destinations.replay import services
from destinations.replay.definition import MAX_NAMES
from destinations.sources import INTERNAL_SOURCE
from tests.dashboard.audience_support import text_of, words_of
from tests.dashboard.replay_support import EVERYTHING, HX, LAST_24_HOURS, PAGE_SKIP, form

pytestmark = pytest.mark.django_db


def form_url(destination: Destination) -> str:
    return reverse("destination-replay", args=[destination.pk])


def preview_url(destination: Destination) -> str:
    return reverse("destination-replay-preview", args=[destination.pk])


def previewed(client: Client, destination: Destination, **fields: Any) -> Any:
    response = client.post(preview_url(destination), form(**fields), headers=HX)
    assert response.status_code == 200
    return response


def type_numbers(response: Any) -> dict[str, tuple[int, int]]:
    """The preview's table: call type -> (in range, would be sent)."""
    rows = re.findall(
        r'<tr id="preview-type-(\w+)">.*?<td class="number">(\d+)</td>'
        r'<td class="number">~?(\d+)</td></tr>',
        text_of(response),
    )
    return {kind: (int(in_range), int(sending)) for kind, in_range, sending in rows}


def example_ids(response: Any) -> list[int]:
    """The events the preview's examples link to, in order."""
    table = text_of(response).split('<table class="grid examples">')[1].split("</table>")[0]
    return [int(pk) for pk in re.findall(r'href="/events/(\d+)/"', table)]


def test_the_form_offers_the_presets_sources_and_call_types(
    operator: Client, kana_history: Destination, source: Source
) -> None:
    response = operator.get(form_url(kana_history))
    assert response.status_code == 200
    page = text_of(response)
    for label in ("Last 24 h", "Last 7 days", "Last 30 days", "Everything", "From … to …"):
        assert label in page
    assert response.context["form"]["range"].value() == "24h"  # the smallest range by default
    assert response.context["form"].fields["sources"].choices == [(str(source.pk), "Web app")]
    assert INTERNAL_SOURCE not in page  # Switchboard's own events are never replayed
    types = {value for value, _ in response.context["form"].fields["types"].choices}
    assert types == {"track", "identify", "page", "screen", "group"}  # alias is never sent
    assert "Also send events this destination already received" in page
    [tick] = re.findall(r'<input[^>]*name="include_received"[^>]*>', page)
    assert "checked" not in tick  # only what it never received, unless ticked
    # A new destination's offer links here with the last 30 days chosen.
    response = operator.get(form_url(kana_history) + "?range=30d")
    assert response.context["form"]["range"].value() == "30d"
    assert operator.get(form_url(kana_history) + "?range=1y").context["form"]["range"].value() == (
        "24h"
    )


def test_preview_counts_per_call_type_with_examples_and_reasons(
    operator: Client, kana_history: Destination
) -> None:
    response = previewed(operator, kana_history)
    assert type_numbers(response) == EVERYTHING
    words = words_of(response)
    assert (
        "6 events would be sent to Kana, of 10 stored events from any time that it has not received"
        in words
    )
    assert "About" not in words
    assert f"{PAGE_SKIP}: 3" in words and f"{UNMAPPED}: 1" in words
    # The first five to be sent, oldest first, each linking to its event's page.
    first = ["id-0", "id-1", "id-2", "tr-0", "tr-1"]
    assert example_ids(response) == [Event.objects.get(message_id=m).pk for m in first]
    assert '{"billingUserId": "cus_0", "email": "u0@example.com"}' in text_of(response)
    assert "Nothing has been sent" in words
    assert not Job.objects.filter(kind=JobKind.REPLAY).exists()


def test_presets_and_narrowing(operator: Client, kana_history: Destination) -> None:
    assert type_numbers(previewed(operator, kana_history, range="24h")) == LAST_24_HOURS
    last_week = type_numbers(previewed(operator, kana_history, range="7d"))
    assert last_week == {"track": (3, 3), "page": (3, 0)}
    last_month = type_numbers(previewed(operator, kana_history, range="30d"))
    assert last_month == {"identify": (3, 3), "track": (3, 3), "page": (3, 0)}
    identifies = previewed(operator, kana_history, types=["identify"])
    assert type_numbers(identifies) == {"identify": (3, 3)}
    named = previewed(operator, kana_history, names="Old Thing\n\n  Old Thing  \n")
    assert type_numbers(named) == {"track": (1, 0)}
    assert f"{UNMAPPED}: 1" in words_of(named)
    assert "No stored events match" in words_of(previewed(operator, kana_history, names="Nope"))


def test_a_custom_range_from_and_to(operator: Client, kana_history: Destination) -> None:
    old = Event.objects.get(message_id="old").timestamp
    response = previewed(
        operator,
        kana_history,
        range="custom",
        since=old.strftime("%Y-%m-%dT%H:%M:%S.%f"),
        until=Event.objects.get(message_id="id-0").timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f"),
    )
    assert type_numbers(response) == {"track": (1, 0)}  # the old track only; To is excluded
    open_start = previewed(operator, kana_history, range="custom", since="", until="")
    assert type_numbers(open_start) == EVERYTHING


def test_preview_says_about_when_it_routed_only_part(
    operator: Client, kana_history: Destination, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PREVIEW_SCAN events (taken a page of 1,000 at a time) the rest is estimated."""
    monkeypatch.setattr(services, "PREVIEW_SCAN", 1000)
    now = timezone.now()
    Event.objects.bulk_create(
        Event(source=source, message_id=f"bulk-{n}", type="page", user_id="u0", name="Home",
              timestamp=now - timedelta(minutes=30), received_at=now,
              payload={"type": "page", "userId": "u0", "name": "Home", "messageId": f"bulk-{n}"})
        for n in range(1200)
    )  # fmt: skip
    response = previewed(operator, kana_history)
    words = words_of(response)
    assert "About" in words and "of 1210 stored events" in words
    assert "estimated" in words
    assert type_numbers(response)["page"] == (1203, 0)


def test_preview_without_javascript_returns_the_form_with_it(
    operator: Client, kana_history: Destination
) -> None:
    response = operator.post(preview_url(kana_history), form(range="24h", types=["track"]))
    assert response.status_code == 200
    page = text_of(response)
    assert 'id="replay-form"' in page and 'id="replay-preview"' in page
    assert response.context["form"]["types"].value() == ["track"]  # the form as typed
    assert type_numbers(response) == LAST_24_HOURS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"range": "custom", "since": "2024-05-02T00:00", "until": "2024-05-01T00:00"},
         "The start of the range must be before its end."),
        ({"range": "custom", "since": "2024-02-30T00:00"}, "Enter a valid date/time."),
        ({"range": "custom", "until": "not a date"}, "Enter a valid date/time."),
        ({"range": "custom", "since": "0001-01-01T00:00:00+14:00"},
         "That moment is outside the calendar in UTC."),
        ({"range": "forever"}, "Select a valid choice. forever is not one of the available"),
        ({"sources": ["999999"]}, "Select a valid choice. 999999 is not one of the available"),
        ({"sources": ["99999999999999999999999"]}, "Select a valid choice."),
        ({"types": ["alias"]}, "Select a valid choice. alias is not one of the available"),
        ({"names": "\n".join(f"e{n}" for n in range(MAX_NAMES + 1))},
         f"At most {MAX_NAMES} event names ({MAX_NAMES + 1} given)."),
        ({"names": "x" * 256}, "An event name has at most 255 characters (one given has 256)."),
    ],
)  # fmt: skip
def test_refusals_are_form_errors(
    operator: Client, kana_history: Destination, fields: dict[str, Any], message: str
) -> None:
    preview = operator.post(preview_url(kana_history), form(**fields), headers=HX)
    assert preview.status_code == 200
    assert "Cannot preview" in words_of(preview) and message in words_of(preview)
    started = operator.post(form_url(kana_history), form(**fields))
    assert started.status_code == 200
    assert message in words_of(started)
    assert not Job.objects.filter(kind=JobKind.REPLAY).exists()


def test_a_nul_character_is_refused_with_a_400_naming_the_field(
    operator: Client, kana_history: Destination
) -> None:
    for url in (preview_url(kana_history), form_url(kana_history)):
        response = operator.post(url, form(names="a\x00b"))
        assert response.status_code == 400
        assert "The field 'names' holds a NUL character" in response.content.decode()

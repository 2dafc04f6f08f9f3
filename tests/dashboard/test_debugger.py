"""A source's live debugger: newest first, polling with ``after``, pause, search, refused
messages with their reason, pretty and raw views, a capped list, escaping."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from dashboard.selectors.debugger import DEBUGGER_ROWS
from destinations.models import Event, IngestFailure, Source
from tests.helpers.ingest import IngestPost
from tests.helpers.pages import text_of

pytestmark = pytest.mark.django_db


# --- Debugger ---------------------------------------------------------------------------------


def debugger_url(source: Source, query: str = "") -> str:
    url = reverse("source-debugger", args=[source.pk])
    return f"{url}?{query}" if query else url


def row_keys_of(body: str) -> list[str]:
    return re.findall(r'<li id="((?:event|refused)-\d+)"', body)


def row_keys(response: Any) -> list[str]:
    return row_keys_of(response.content.decode())


def poll(client: Client, source: Source, query: str, target: str = "debugger-rows") -> Any:
    return client.get(
        debugger_url(source, query), headers={"HX-Request": "true", "HX-Target": target}
    )


@pytest.fixture
def sent(post_ingest: IngestPost, source: Source) -> list[Event]:
    post_ingest(
        "identify",
        {
            "userId": "u-ada",
            "messageId": "msg-1",
            "traits": {"email": "ada@example.com", "address": {"city": "Oslo"}, "vip": True},
            "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
        },
    )
    post_ingest(
        "track",
        {
            "userId": "u-ada",
            "event": "Report Exported",
            "messageId": "msg-2",
            "properties": {"format": "csv", "rows": 1200, "filters": ["a", "b"], "note": None},
        },
    )
    post_ingest("page", {"anonymousId": "anon-7", "name": "Pricing", "messageId": "msg-3"})
    return list(Event.objects.order_by("id"))


def test_debugger_shows_newest_first_and_is_linked_from_the_source(
    staff_client: Client, source: Source, sent: list[Event]
) -> None:
    response = staff_client.get(debugger_url(source))
    assert response.status_code == 200
    assert row_keys(response) == [f"event-{e.pk}" for e in reversed(sent)]
    body = response.content.decode()
    # Live: polling for what is newer than the newest row shown.
    assert f'hx-get="{debugger_url(source)}?after={sent[-1].pk}&amp;after_refused=0"' in body
    assert 'hx-trigger="every 1s"' in body and 'hx-swap="afterbegin"' in body
    assert f'data-keep-rows="{DEBUGGER_ROWS}"' in body
    detail = staff_client.get(reverse("source-detail", args=[source.pk])).content.decode()
    assert f'href="{debugger_url(source)}"' in detail


def test_poll_returns_only_newer_events(
    staff_client: Client, source: Source, sent: list[Event], post_ingest: IngestPost
) -> None:
    first, second, third = sent
    response = poll(staff_client, source, f"after={first.pk}&after_refused=0")
    assert response.status_code == 200
    assert row_keys(response) == [f"event-{third.pk}", f"event-{second.pk}"]
    body = response.content.decode()
    assert "<html" not in body
    # The live controls come along out of band, polling from the newest row now shown.
    assert 'id="debugger-live" class="live-state live" hx-swap-oob="true"' in body
    assert f"after={third.pk}&amp;after_refused=0" in body
    assert "HX-Target" in response["Vary"]
    # Nothing newer: 204, and htmx leaves the page as it is.
    assert poll(staff_client, source, f"after={third.pk}").status_code == 204
    post_ingest("track", {"userId": "u-bo", "event": "Seat Added", "messageId": "msg-4"})
    newer = poll(staff_client, source, f"after={third.pk}")
    assert row_keys(newer) == [f"event-{Event.objects.get(message_id='msg-4').pk}"]


def test_pause_and_resume(staff_client: Client, source: Source, sent: list[Event]) -> None:
    newest = sent[-1].pk
    paused = staff_client.get(debugger_url(source, "paused=1"))
    body = paused.content.decode()
    assert row_keys(paused) == [f"event-{e.pk}" for e in reversed(sent)]  # still shown
    assert 'hx-trigger="every 1s"' not in body
    assert "Paused" in body
    # Resume is a plain link to the live page; with htmx it fetches the live controls, which
    # carry on from the newest row shown.
    assert f'<a class="button primary" href="{debugger_url(source)}"' in body
    assert f'hx-get="{debugger_url(source)}?after={newest}&amp;after_refused=0"' in body
    assert '<noscript><meta http-equiv="refresh"' not in body

    live = staff_client.get(debugger_url(source)).content.decode()
    assert f'href="{debugger_url(source)}?paused=1"' in live
    assert (
        f'hx-get="{debugger_url(source)}?paused=1&amp;after={newest}&amp;after_refused=0"' in live
    )
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in live

    # With htmx: Pause swaps the controls alone (the rows stay); a poll while paused is a no-op.
    controls = poll(staff_client, source, f"paused=1&after={newest}", target="debugger-live")
    fragment = controls.content.decode()
    assert fragment.lstrip().startswith('<div id="debugger-live" class="live-state paused"')
    assert row_keys(controls) == []
    assert poll(staff_client, source, f"paused=1&after={sent[0].pk}").status_code == 204
    resumed = poll(staff_client, source, f"after={newest}", target="debugger-live")
    assert 'hx-trigger="every 1s"' in resumed.content.decode()
    assert f"after={newest}&amp;after_refused=0" in resumed.content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Report Exported", ["msg-2"]),
        ("u-ada", ["msg-2", "msg-1"]),
        ("anon-7", ["msg-3"]),
        ("msg-1", ["msg-1"]),
        ("Report", []),  # exact matches only: each is an indexed lookup
    ],
)
def test_search(
    staff_client: Client, source: Source, sent: list[Event], query: str, expected: list[str]
) -> None:
    response = staff_client.get(debugger_url(source), {"q": query})
    by_key = {f"event-{e.pk}": e.message_id for e in sent}
    assert [by_key[key] for key in row_keys(response)] == expected
    body = response.content.decode()
    assert f'value="{html.escape(query)}"' in body
    # Polling keeps the search.
    assert "q=" + query.replace(" ", "+") in body


def test_refused_messages_are_interleaved_with_their_reason(
    staff_client: Client, source: Source, post_ingest: IngestPost
) -> None:
    post_ingest("track", {"userId": "u-1", "event": "First", "messageId": "ok-1"})
    refused = post_ingest("track", {"userId": "u-1", "messageId": "bad-1"})  # no event name
    assert refused.status_code == 400
    post_ingest("track", {"userId": "u-1", "event": "Second", "messageId": "ok-2"})
    failure = IngestFailure.objects.get()
    first, second = Event.objects.order_by("id")
    response = staff_client.get(debugger_url(source))
    assert row_keys(response) == [
        f"event-{second.pk}",
        f"refused-{failure.pk}",
        f"event-{first.pk}",
    ]
    body = text_of(response)
    assert '<span class="badge refused">failed on ingest</span>' in body
    assert failure.reason and failure.reason in body
    assert "/v1/track" in body
    # What was sent, field by field and raw.
    assert '<tr><th>messageId</th><td class="value-text">bad-1</td></tr>' in body
    assert '"messageId": "bad-1"' in body
    # The poll picks up new refusals by their own cursor.
    post_ingest("track", {"anonymousId": "a-9", "messageId": "bad-2"})
    newer = poll(staff_client, source, f"after={second.pk}&after_refused={failure.pk}")
    assert row_keys(newer) == [f"refused-{IngestFailure.objects.latest('id').pk}"]
    # A search finds refused messages by their text.
    found = staff_client.get(debugger_url(source), {"q": "bad-1"})
    assert row_keys(found) == [f"refused-{failure.pk}"]


def test_pretty_and_raw_views(staff_client: Client, source: Source, sent: list[Event]) -> None:
    identify, track, page = sent
    body = text_of(staff_client.get(debugger_url(source)))
    track_row = re.search(rf'<li id="event-{track.pk}".*?</li>', body, re.S)
    assert track_row is not None
    row = track_row.group(0)
    # Pretty: the facts first, then properties by dotted path, typed.
    assert '<dt>Event</dt><dd class="value-text">Report Exported</dd>' in row
    assert '<dt>User ID</dt><dd class="value-text">u-ada</dd>' in row
    assert '<dt>Message ID</dt><dd class="value-text">msg-2</dd>' in row
    assert '<tr><th>format</th><td class="value-text">csv</td></tr>' in row
    assert '<tr><th>rows</th><td class="value-number">1200</td></tr>' in row
    assert '<tr><th>filters</th><td class="value-json">["a", "b"]</td></tr>' in row
    assert '<tr><th>note</th><td class="value-null">null</td></tr>' in row
    # Raw: the stored payload as indented JSON; pretty and raw switch without JavaScript.
    assert '"event": "Report Exported"' in row
    assert '<pre class="view raw json">' in row
    assert f'<input type="radio" name="view-event-{track.pk}"' in row
    identify_row = re.search(rf'<li id="event-{identify.pk}".*?</li>', body, re.S)
    assert identify_row is not None
    assert '<tr><th>address.city</th><td class="value-text">Oslo</td></tr>' in identify_row.group(0)
    assert '<tr><th>vip</th><td class="value-bool">true</td></tr>' in identify_row.group(0)
    assert '<dd class="value-text">analytics-python 2.3.3</dd>' in identify_row.group(0)
    page_row = re.search(rf'<li id="event-{page.pk}".*?</li>', body, re.S)
    assert page_row is not None
    assert '<dt>Name</dt><dd class="value-text">Pricing</dd>' in page_row.group(0)


def test_the_list_is_capped(staff_client: Client, source: Source, post_ingest: IngestPost) -> None:
    batch = [
        {"type": "track", "userId": "u", "event": "Tick", "messageId": f"t-{n}"}
        for n in range(DEBUGGER_ROWS + 5)
    ]
    assert post_ingest("batch", {"batch": batch}).status_code == 200
    response = staff_client.get(debugger_url(source))
    keys = row_keys(response)
    assert len(keys) == DEBUGGER_ROWS
    newest = Event.objects.order_by("-id")[:DEBUGGER_ROWS]
    assert keys == [f"event-{e.pk}" for e in newest]
    # A poll after a long pause brings the newest ones and says that older ones were left out.
    oldest = Event.objects.order_by("id").first()
    assert oldest is not None
    caught_up = poll(staff_client, source, f"after={oldest.pk}")
    assert len(row_keys(caught_up)) == DEBUGGER_ROWS
    assert "are not shown here" in caught_up.content.decode()


def test_debugger_of_an_unknown_source_is_404(staff_client: Client) -> None:
    assert staff_client.get("/sources/999999/debugger/").status_code == 404


def test_what_was_sent_is_escaped(
    staff_client: Client, source: Source, post_ingest: IngestPost
) -> None:
    attack = '<img src=x onerror="alert(1)">'
    post_ingest(
        "track",
        {"userId": attack, "event": attack, "properties": {attack: attack}, "messageId": "x-1"},
    )
    post_ingest("track", {"userId": attack, "messageId": "x-2"})  # refused: no event name
    body = staff_client.get(debugger_url(source)).content.decode()
    assert len(row_keys_of(body)) == 2
    assert "<img" not in body
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in body

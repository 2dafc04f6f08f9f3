"""Replay history with hostile input: any form data at the preview and start views gets a page
with a form error, a preview, a redirect to the started replay, or a 4xx saying why, never a
5xx; and a poisoned stored event renders among the preview's examples."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import example, given
from hypothesis import strategies as st

from destinations.delivery.services import destination_create
from destinations.models import Destination, Event, Job, JobKind, Replay, Source
from destinations.replay.services import active_replay, cancel_replay
from tests.helpers.ingest import basic
from tests.helpers.members import MakeMember
from tests.hostile import strategies as gen
from tests.hostile.conftest import record

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}
BIG = "123456789012345678901234567890"
# A track whose name holds markup and a surrogate escape, whose properties hold a number past
# 64 bits, another escape and deep nesting: as ingest accepts them.
DEEP = '{"a": ' * 20 + "1" + "}" * 20
POISONED_TRACK = (
    '{"userId": "poison", "messageId": "poison-replay", '
    '"event": "Poison \\\\ud800 <script>alert(1)</script>", '
    f'"properties": {{"n": {BIG}, "s": "\\\\udfff", "z": {DEEP}}}}}'
)
FIELDS = ["range", "since", "until", "sources", "types", "names", "include_received"]


@pytest.fixture
def world(client: Client, source: Source, make_member: MakeMember) -> dict[str, Any]:
    """The poisoned event stored first, then a webhook destination (it takes every call
    type) that never received it; an operator signed in."""
    response = client.generic(
        "POST",
        "/v1/track",
        data=POISONED_TRACK.encode(),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic(source.write_key),
    )
    assert response.status_code == 200, response.content
    hook = destination_create(
        kind="webhook",
        name="Hook <b>\\ud800</b>",
        settings_values={"url": "http://127.0.0.1:9/hook", "trigger": "events"},
        secret_values={"auth_token": "hook-token-123"},
    )
    client.force_login(make_member(username="hostile-op", role="operator"))
    return {"destination": hook, "source": source}


def test_a_poisoned_event_renders_in_the_preview_examples(
    client: Client, world: dict[str, Any]
) -> None:
    destination: Destination = world["destination"]
    event = Event.objects.get(message_id="poison-replay")
    url = reverse("destination-replay-preview", args=[destination.pk])
    for headers in (HX, {}):
        response = client.post(url, {"range": "all"}, headers=headers)
        record(response, "replay")
        assert response.status_code == 200
        page = response.content.decode()
        assert "<script>alert(1)</script>" not in page
        examples = page.split('<table class="grid examples">')[1].split("</table>")[0]
        assert f'href="/events/{event.pk}/"' in examples
        assert "Poison \\ud800 &lt;script&gt;alert(1)&lt;/script&gt;" in examples
        # The number as the database gives it back (PostgreSQL's jsonb: as a float).
        assert "&quot;n&quot;: 1" in examples
        assert "&quot;s&quot;: &quot;\\\\udfff&quot;" in examples
    record(client.get(reverse("event-detail", args=[event.pk])), "replay")
    shown = client.get(reverse("destination-delivery", args=[destination.pk]))
    record(shown, "replay")
    assert shown.status_code == 200


hostile_values = st.one_of(
    gen.query_values,
    st.lists(gen.query_values, max_size=4),
    st.lists(gen.any_text, max_size=60).map("\n".join),
)
moments = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M")),
    st.just(""),
)
# Near what a browser sends, field by field; SOURCE stands for the real source's id.
NEAR_VALID: dict[str, st.SearchStrategy[Any]] = {
    "range": st.sampled_from(["24h", "7d", "30d", "all", "custom"]),
    "since": moments,
    "until": moments,
    "sources": st.lists(st.sampled_from(["SOURCE", "SOURCE", "0", "-1", "999999"]), max_size=3),
    "types": st.lists(st.sampled_from(["track", "identify", "page", "screen", "group", "alias"])),
    "names": st.lists(st.sampled_from(["Poison \\ud800", "Clicked", "", " "]), max_size=4).map(
        "\n".join
    ),
    "include_received": st.sampled_from(["on", "", "off", "true"]),
}


@st.composite
def replay_forms(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly a chosen range and a few near-valid fields; now and then anything at all."""
    form: dict[str, Any] = {}
    if draw(st.integers(0, 4)):
        form["range"] = draw(NEAR_VALID["range"])
    for name in draw(st.sets(st.sampled_from(FIELDS), max_size=5)):
        hostile = draw(st.integers(0, 3)) == 0
        form[name] = draw(hostile_values if hostile else NEAR_VALID[name])
    return form


def with_source(form: dict[str, Any], source: Source) -> dict[str, Any]:
    real = str(source.pk)
    return {
        name: [real if v == "SOURCE" else v for v in value] if isinstance(value, list) else value
        for name, value in form.items()
    }


@given(form=replay_forms())
@example(form={"range": "custom", "since": "0001-01-01T00:00:00+14:00"})
@example(form={"range": "custom", "until": "9999-12-31T23:59:59-12:00"})
@example(form={"range": "custom", "since": "9999-12-31T23:59", "until": ""})
@example(form={"sources": ["99999999999999999999999"], "types": ["alias", "track"]})
@example(form={"range": "all", "names": "\n".join(str(n) for n in range(51))})
@example(form={"range": "all", "names": "x" * 10_000})
@example(form={"range": "all", "types": ["track"] * 500, "include_received": "on"})
@example(form={"range": "7d", "sources": ["SOURCE"], "types": ["track"], "names": "Clicked"})
def test_any_replay_form_gets_a_form_error_a_preview_or_a_started_replay(
    client: Client, world: dict[str, Any], form: dict[str, Any]
) -> None:
    destination: Destination = world["destination"]
    form = with_source(form, world["source"])
    preview_url = reverse("destination-replay-preview", args=[destination.pk])
    for headers in (HX, {}):
        response = client.post(preview_url, form, headers=headers)
        record(response, "replay")
        assert response.status_code in (200, 400), (form, response.status_code)
        if response.status_code == 200:
            assert re.search(r"would be sent|Cannot preview", response.content.decode())
    response = client.post(reverse("destination-replay", args=[destination.pk]), form)
    record(response, "replay")
    assert response.status_code in (200, 302, 400), (form, response.status_code)
    if response.status_code == 200:
        assert re.search(r'class="(message )?error"', response.content.decode()), form
    if response.status_code == 302:
        replay = active_replay(destination)
        assert replay is not None and response["Location"].endswith(f"#replay-{replay.job_id}")
        assert replay.job.kind == JobKind.REPLAY
        cancel_replay(replay, actor=None)  # so the next example may start one
    assert (
        not Replay.objects.filter(job__in=Job.objects.filter(kind=JobKind.REPLAY))
        .filter(destination=destination, job__status__in=("queued", "running", "paused"))
        .exists()
    )

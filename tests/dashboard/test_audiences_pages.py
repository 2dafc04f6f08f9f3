"""The audience page (its computation's progress, size, chart, definition in words, members
with search and pages, syncs per destination), deleting an audience with and without telling
its members, and audiences on the user, account and event pages. Everything stored renders,
hostile names and huge numbers included.

Refiner is the stand-in on loopback; computations and deliveries run in-process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from destinations.audiences.services import audience_create
from destinations.delivery import engine
from destinations.delivery.services import destination_create
from destinations.models import (
    Audience,
    AudienceSize,
    AudienceState,
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    Job,
    Source,
)
from destinations.standins.refiner import FakeRefiner, serve_fake_refiner
from tests.dashboard.audience_support import (
    EXPORTED_TWICE,
    HX,
    TRIAL,
    compute_now,
    editor_data,
    make_account,
    make_event,
    make_user,
    row_cells,
    text_of,
    words_of,
)

pytestmark = pytest.mark.django_db

TRIALS = {"match": "all", "conditions": [{**TRIAL, "path": "traits.plan"}]}


@pytest.fixture
def stand_in() -> Iterator[FakeRefiner]:
    yield from serve_fake_refiner(api_keys={"rk_test"})


@pytest.fixture
def refiner(db: None, stand_in: FakeRefiner) -> Destination:
    return destination_create(
        kind="refiner",
        name="Refiner",
        settings_values={"base_url": stand_in.base_url},
        secret_values={"api_key": "rk_test"},
    )


@pytest.fixture
def exporters(operator: Client, source: Source, refiner: Destination) -> Audience:
    """Trial users who exported twice this week (Ada and Bob), built in the editor, computed."""
    for user_id, plan, exports in (("u-ada", "trial", 2), ("u-bob", "trial", 3),
                                   ("u-cy", "trial", 1), ("u-dan", "pro", 2)):  # fmt: skip
        user = make_user(user_id, email=f"{user_id[2:]}@example.com", traits={"plan": plan})
        for _ in range(exports):
            make_event(source, user, "Report Exported")
    data = editor_data(conditions=[TRIAL, EXPORTED_TWICE], destinations=[refiner.pk])
    assert operator.post("/audiences/new/", data).status_code == 302
    audience = Audience.objects.get()
    compute_now(audience)
    return audience


def sync_events(audience: Audience) -> Any:
    return Event.objects.filter(message_id__startswith=f"audience-{audience.pk}-")


def deliver_syncs(audience: Audience) -> None:
    ids = list(
        Delivery.objects.filter(event__in=sync_events(audience)).values_list("pk", flat=True)
    )
    engine.deliver(ids)


def bar_titles(body: str) -> list[str]:
    return re.findall(r'<g class="bar">\s*<title>([^<]*)</title>', body)


def test_the_audience_page_shows_its_size_changes_chart_and_conditions(
    operator: Client, exporters: Audience
) -> None:
    page = operator.get(f"/audiences/{exporters.pk}/")
    body = text_of(page)
    assert re.search(r'<strong id="audience-size">2</strong>', body)
    assert re.search(r'<strong id="entered-24h">2</strong>', body)
    assert re.search(r'<strong id="left-24h">0</strong>', body)
    assert '<code id="audience-key">trial_exporters</code>' in body
    # Thirty days, a bar each; today's is the size now.
    assert 'aria-label="Audience size over time"' in body
    titles = bar_titles(body)
    assert len(titles) == 30
    assert titles[-1] == "now: 2 members"
    assert titles[0].endswith("not computed yet")
    assert body.count('<rect class="size"') == 1
    words = words_of(page)
    assert "Users who match all of:" in words
    assert "user traits.plan equals 'trial'" in words
    assert "performed 'Report Exported' at least 2 times in the last 7 days" in words


def test_a_day_s_size_is_the_last_one_stored_that_day(
    operator: Client, exporters: Audience
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    today = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0)
    AudienceSize.objects.filter(audience=exporters).update(at=today - timedelta(days=10))
    for days_ago, hour, size in ((5, 9, 40), (5, 18, 7), (2, 1, 1_999_999_999)):
        at = today.replace(hour=hour) - timedelta(days=days_ago)
        AudienceSize.objects.create(audience=exporters, at=at, size=size)
    body = text_of(operator.get(f"/audiences/{exporters.pk}/"))
    titles = [t.split(": ", 1)[1] for t in bar_titles(body)]
    assert titles[19] == "2 members"  # ten days ago, and every day after until a change
    assert titles[24:27] == ["7 members", "7 members", "7 members"]
    assert titles[27:] == ["1,999,999,999 members"] * 3
    assert "2,000,000,000" in body  # the axis rounds up to a readable top


def test_the_computation_s_progress_is_polled_until_done(
    operator: Client, refiner: Destination
) -> None:
    make_user("u-1", traits={"plan": "trial"})
    operator.post("/audiences/new/", editor_data(name="Trials", destinations=[refiner.pk]))
    audience = Audience.objects.get()
    job = Job.objects.get()
    waiting = operator.get(f"/jobs/{job.pk}/", headers=HX)
    assert waiting.status_code == 200
    assert 'hx-trigger="every 1s"' in waiting.content.decode()
    assert "Waiting for a worker to start…" in words_of(waiting)
    compute_now(audience)
    done = operator.get(f"/jobs/{job.pk}/", headers=HX)
    assert done.status_code == 286  # htmx stops polling
    assert "job-done" in done["HX-Trigger"]
    cells = dict(re.findall(r'<dd id="job-(\w+)"[^>]*>(\d+)</dd>', done.content.decode()))
    assert cells == {"scanned": "1", "entered": "1", "left": "0", "synced": "1"}
    # The job's plain address leads to the audience's page.
    response = operator.get(f"/jobs/{job.pk}/")
    assert response["Location"] == f"/audiences/{audience.pk}/?job={job.pk}"


def test_each_destination_shows_its_last_sync_and_what_is_pending_or_failed(
    operator: Client, exporters: Audience, refiner: Destination, stand_in: FakeRefiner
) -> None:
    page = operator.get(f"/audiences/{exporters.pk}/")
    assert row_cells(page, f"sync-{refiner.pk}") == ["Refiner Refiner", "never", "0", "2", "0", "—"]
    assert f'<a href="/destinations/{refiner.pk}/">Refiner</a>' in text_of(page)

    deliver_syncs(exporters)
    received = [(r.body["id"], r.body["trial_exporters"]) for r in stand_in.requests_to(
        "/identify-user") if "trial_exporters" in r.body]  # fmt: skip
    assert sorted(received) == [("u-ada", True), ("u-bob", True)]
    page = operator.get(f"/audiences/{exporters.pk}/")
    assert row_cells(page, f"sync-{refiner.pk}")[1:5] == ["just now", "2", "0", "0"]

    Delivery.objects.filter(event__in=sync_events(exporters)).update(status=DeliveryStatus.FAILED)
    page = operator.get(f"/audiences/{exporters.pk}/")
    assert row_cells(page, f"sync-{refiner.pk}")[2:5] == ["0", "0", "2"]
    assert f'href="/destinations/{refiner.pk}/#errors">2</a>' in text_of(page)


def test_members_are_searched_and_paged_through_once_each(
    operator: Client, refiner: Destination
) -> None:
    for n in range(120):
        make_user(f"u-{n:03}", email=f"Person{n:03}@example.com", traits={"plan": "trial"})
    make_user("u-pro", traits={"plan": "pro"})
    audience, _ = audience_create(name="Trials", subject="users", definition=TRIALS)
    compute_now(audience)
    url = f"/audiences/{audience.pk}/"

    def members(response: Any) -> list[str]:
        return re.findall(r'<a href="/users/\d+/">(u-[^<]+)</a>', text_of(response))

    seen: list[str] = []
    page = operator.get(url)
    while True:
        seen += members(page)
        next_page = re.search(r'<a href="([^"]+)#members">Next →</a>', text_of(page))
        if next_page is None:
            break
        page = operator.get(next_page[1])
    assert len(seen) == 120 and len(set(seen)) == 120
    assert "u-pro" not in seen

    assert sorted(members(operator.get(url, {"q": "u-01"}))) == [f"u-01{n}" for n in range(10)]
    assert members(operator.get(url, {"q": "Person007"})) == ["u-007"]
    assert members(operator.get(url, {"q": "person11"})) == []  # a prefix, as typed
    none = operator.get(url, {"q": "nobody"})
    assert "No member matches “nobody”." in words_of(none)
    # Searching pages too: the next page keeps the search.
    page = operator.get(url, {"q": "u-"})
    assert re.search(r'href="[^"]*\?q=u-&amp;before=\d+#members">Next', page.content.decode())


def test_deleting_asks_whether_to_tell_the_members_first(
    operator: Client, exporters: Audience, stand_in: FakeRefiner
) -> None:
    deliver_syncs(exporters)
    url = f"/audiences/{exporters.pk}/delete/"
    page = text_of(operator.get(url))
    assert "Tell the members they left?" in page
    assert re.search(r'<input type="radio" name="tell" value="yes"[^>]*checked', page)
    # An empty POST is no answer: it asks again.
    assert "This field is required." in words_of(operator.post(url, {}))
    assert Audience.objects.filter(pk=exporters.pk).exists()

    response = operator.post(url, {"tell": "yes"}, follow=True)
    assert "Audience 'Trial exporters' deleted; 2 members told they left." in words_of(response)
    assert not Audience.objects.exists()
    left = sync_events(exporters).filter(message_id__endswith="-v2")
    assert left.count() == 2
    assert {e.payload["traits"]["trial_exporters"] for e in left} == {False}


def test_deleting_without_telling_sends_nothing(operator: Client, exporters: Audience) -> None:
    before = sync_events(exporters).count()
    response = operator.post(f"/audiences/{exporters.pk}/delete/", {"tell": "no"}, follow=True)
    assert "Audience 'Trial exporters' deleted; members were not told." in words_of(response)
    assert not Audience.objects.exists()
    assert sync_events(exporters).count() == before == 2


def test_an_audience_another_one_uses_is_not_deleted(operator: Client, exporters: Audience) -> None:
    uses = {"type": "audience", "audience": exporters.pk, "in": False}
    audience_create(
        name="Quiet", subject="users", definition={"match": "all", "conditions": [uses]}
    )
    page = operator.get(f"/audiences/{exporters.pk}/delete/")
    assert "Used in a condition by Quiet: change or delete it first" in words_of(page)
    assert '<button type="submit" class="danger" disabled>' in page.content.decode()
    response = operator.post(f"/audiences/{exporters.pk}/delete/", {"tell": "no"}, follow=True)
    assert "'Quiet' uses this audience in a condition: change or delete that first." in (
        words_of(response)
    )
    assert Audience.objects.filter(pk=exporters.pk).exists()
    # Its page names the audience it uses, with a link.
    quiet = Audience.objects.get(name="Quiet")
    body = text_of(operator.get(f"/audiences/{quiet.pk}/"))
    assert f'not in audience <a href="/audiences/{exporters.pk}/">Trial exporters</a>' in body


def test_user_and_account_pages_list_their_audiences(
    operator: Client, exporters: Audience, source: Source
) -> None:
    ada = exporters.states.get(profile__user_id="u-ada")
    page = operator.get(f"/users/{ada.profile_id}/")
    assert re.search(
        rf'<a href="/audiences/{exporters.pk}/">Trial exporters</a> <small class="muted">since',
        text_of(page),
    )
    cy = make_user("u-zed")
    assert "In no audience." in words_of(operator.get(f"/users/{cy.pk}/"))

    acme = make_account("g-acme", cy, traits={"plan": "enterprise"})
    make_account("g-tiny", traits={"plan": "enterprise"})
    make_event(source, cy, "Seat Added")
    conditions = [
        {"type": "account", "path": "plan", "op": "equals", "value": "enterprise"},
        {"type": "event", "event": "Seat Added", "count": "at_least", "times": "1", "within": ""},
    ]
    data = editor_data(name="Active enterprise", subject="accounts", conditions=conditions)
    assert operator.post("/audiences/new/", data).status_code == 302
    accounts = Audience.objects.get(name="Active enterprise")
    assert accounts.definition["conditions"][0]["path"] == "traits.plan"
    compute_now(accounts)
    assert list(AudienceState.objects.filter(audience=accounts, member=True).values_list(
        "account__group_id", flat=True)) == ["g-acme"]  # fmt: skip
    page = operator.get(f"/accounts/{acme.pk}/")
    assert f'<a href="/audiences/{accounts.pk}/">Active enterprise</a>' in text_of(page)
    members = operator.get(f"/audiences/{accounts.pk}/")
    assert f'<a href="/accounts/{acme.pk}/">g-acme</a>' in text_of(members)


def test_events_label_audience_syncs(
    operator: Client, exporters: Audience, post_ingest: Any
) -> None:
    listing = text_of(operator.get("/events/"))
    assert listing.count("audience sync: Trial exporters") == 2
    sync = sync_events(exporters).get(profile__user_id="u-ada")
    page = operator.get(f"/events/{sync.pk}/")
    assert "audience sync: Trial exporters" in words_of(page)
    assert f'a member of <a href="/audiences/{exporters.pk}/">Trial exporters</a>' in text_of(page)
    user_page = text_of(operator.get(f"/users/{sync.profile_id}/"))
    assert "audience sync: Trial exporters" in user_page

    # A sender's look-alike is an audience sync too, but not one of ours: no name is given.
    look_alike = {"userId": "u-ada", "messageId": f"audience-{exporters.pk}-u1-v9",
                  "traits": {"trial_exporters": True},
                  "context": {"personas": {"computation_class": "audience"}}}  # fmt: skip
    assert post_ingest("identify", look_alike).status_code == 200
    theirs = Event.objects.get(message_id=f"audience-{exporters.pk}-u1-v9")
    assert "audience sync: Trial" not in words_of(operator.get(f"/events/{theirs.pk}/"))
    assert "audience sync" in words_of(operator.get(f"/events/{theirs.pk}/"))

    operator.post(f"/audiences/{exporters.pk}/delete/", {"tell": "no"})
    assert "audience sync: Trial" not in text_of(operator.get("/events/"))
    assert text_of(operator.get("/events/")).count("audience sync") == 3
    assert "(one no longer here, or not Switchboard's)" in words_of(
        operator.get(f"/events/{sync.pk}/")
    )


HOSTILE = '<script>alert("x")</script> Ünïcødé \u202e ' + "w" * 150


def test_hostile_names_and_huge_numbers_render_on_every_page(
    operator: Client, refiner: Destination
) -> None:
    make_user("<b>u</b>", email="<i>@example.com", traits={"plan": "<img src=x>"})
    strange = {"type": "trait", "path": "traits.plan", "op": "equals", "value": "<img src=x>"}
    deep = {"type": "event", "event": "</td>" * 40, "count": "at_most", "times": 1_000_000,
            "within_days": 3650, "where": [{"path": "properties.a.b.c", "op": "contains",
                                            "value": "\\ud800"}]}  # fmt: skip
    audience, _ = audience_create(
        name=HOSTILE,
        subject="users",
        definition={"match": "any", "conditions": [strange, {"type": "group", "match": "all",
                                                             "conditions": [deep]}]},
        destination_ids=[refiner.pk],
        segments={refiner.pk: "<seg>"},
    )  # fmt: skip
    compute_now(audience)
    Audience.objects.filter(pk=audience.pk).update(size=2**31 - 1)
    AudienceSize.objects.create(audience=audience, size=2**31 - 1)
    user = AudienceState.objects.get(audience=audience).profile
    assert user is not None
    own = f"/audiences/{audience.pk}/"
    pages = ["/audiences/", own, f"{own}edit/", f"{own}delete/", f"/users/{user.pk}/", "/events/",
             f"{own}?q=%3Cscript%3E&before=99999999999999999999999"]  # fmt: skip
    for path in pages:
        response = operator.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        assert "<script>alert" not in body and "<img src=x>" not in body, path
    detail = operator.get(f"/audiences/{audience.pk}/")
    assert '<strong id="audience-size">2147483647</strong>' in detail.content.decode()
    assert "2,147,483,647 members" in text_of(detail)
    assert operator.get("/audiences/99999999999999999999/").status_code == 404
    assert operator.get("/audiences/not-a-number/").status_code == 404


def test_audience_lists_do_not_query_per_row(
    operator: Client, refiner: Destination, source: Source
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(path: str) -> int:
        operator.get(path)  # the frame's counts are cached for a few seconds: fill them first
        with CaptureQueriesContext(connection) as captured:
            assert operator.get(path).status_code == 200
        return len(captured)

    def grow(first: int, last: int) -> Audience:
        for n in range(first, last):
            make_user(f"u-{n}", traits={"plan": "trial"})
            made, _ = audience_create(name=f"Trials {n}", subject="users", definition=TRIALS,
                                      destination_ids=[refiner.pk])  # fmt: skip
            compute_now(made)
        return made

    audience = grow(0, 2)
    counts = [queries("/audiences/"), queries("/events/"), queries(f"/audiences/{audience.pk}/")]
    audience = grow(2, 12)
    assert [queries("/audiences/"), queries("/events/"), queries(f"/audiences/{audience.pk}/")] == (
        counts
    )

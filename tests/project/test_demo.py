"""Demo mode's data: seeded against the stand-ins, marked, and removed without touching the rest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from dashboard.selectors.conflicts import cached_conflict_counts
from destinations.connectors.kana.rules import rule_save
from destinations.connectors.refiner.contacts import delete_contacts
from destinations.connectors.webhook.connector import DELIVERY_FAILED, USER_CHANGED
from destinations.delivery import engine, filters
from destinations.delivery.services import destination_create
from destinations.demo import (
    DEMO_KANA_KEY,
    DEMO_REFINER_KEY,
    DEMO_SOURCE,
    demo_loaded,
    remove_demo,
    seed_demo,
)
from destinations.models import (
    FINISHED,
    Account,
    Delivery,
    DeliveryStatus,
    Destination,
    Event,
    MappingRule,
    Profile,
    Source,
)
from destinations.people.conflicts import conflict_counts
from destinations.people.merge import merge_undo, profile_merge
from destinations.standins.kana import FakeKana
from destinations.standins.refiner import FakeRefiner
from tests.helpers.ingest import IngestPost
from tests.helpers.members import MakeMember
from tests.helpers.worker import ROOT, Worker, wait_until

pytestmark = pytest.mark.django_db


def test_seed_then_remove_leaves_other_data_alone(post_ingest: IngestPost, source: Source) -> None:
    assert (
        post_ingest("identify", {"userId": "real-1", "traits": {"email": "r@x.co"}}).status_code
        == 200
    )
    seeded = seed_demo(refiner_url="http://127.0.0.1:9/v1", kana_url="http://127.0.0.1:9/graphql")
    assert demo_loaded()
    assert seeded["events"] > 100
    demo_destinations = Destination.objects.filter(demo=True)
    assert sorted(d.name for d in demo_destinations) == [
        "Kana (demo)",
        "Refiner (demo)",
        "Refiner, wrong key (demo)",
    ]
    keys = {d.name: d.secrets["api_key"] for d in demo_destinations}
    assert keys["Refiner (demo)"] == DEMO_REFINER_KEY and keys["Kana (demo)"] == DEMO_KANA_KEY
    assert MappingRule.objects.get().feature_id == "exports"
    # Conflicts to resolve: two shared emails, users without billing ids.
    counts = conflict_counts()
    assert counts["duplicate_emails"] == 2 and counts["without_billing_id"] >= 4
    assert Delivery.objects.filter(destination__demo=True).exists()
    # Seeded over the last day and a half: each account was first seen before it was last seen.
    for account in Account.objects.all():
        assert account.first_seen_at is not None and account.last_seen_at is not None
        assert account.first_seen_at < account.last_seen_at, account.group_id
    # Seeding again only re-points the destinations.
    assert seed_demo(
        refiner_url="http://127.0.0.1:8/v1", kana_url="http://127.0.0.1:8/graphql"
    ) == {"events": 0}
    assert (
        Destination.objects.get(name="Refiner (demo)").settings["base_url"]
        == "http://127.0.0.1:8/v1"
    )

    removed = remove_demo()
    assert removed["events"] == seeded["events"]
    assert not demo_loaded()
    assert not Destination.objects.exists()
    assert list(Profile.objects.values_list("user_id", flat=True)) == ["real-1"]
    assert not Account.objects.exists()
    assert Event.objects.filter(source=source).count() == 1


# --- demo data stays with the stand-ins ------------------------------------------------------


def user_ids_sent(refiner: FakeRefiner) -> set[str]:
    """Whom a Refiner server was told about, by user id (identify and track calls)."""
    return {
        str(r.body.get("id") or r.body.get("user_id"))
        for r in refiner.received
        if r.method == "POST" and isinstance(r.body, dict)
    }


def unfinished() -> str:
    rows = Delivery.objects.exclude(status__in=FINISHED)
    return f"unfinished: {list(rows.values_list('destination__name', 'status'))}"


def test_demo_data_goes_to_the_stand_ins_only_and_leaves_with_the_demo(
    worker: Worker,
    source: Source,
    fake_refiner: FakeRefiner,
    demo_refiner: FakeRefiner,
    demo_kana: FakeKana,
    post_ingest: IngestPost,
) -> None:
    """The walkthrough: the operator's own Refiner destination next to the demo, a merge of the
    demo "alan" group and its undo, then Remove demo data."""
    seed_demo(refiner_url=demo_refiner.base_url, kana_url=demo_kana.base_url)
    mine = destination_create(
        kind="refiner",
        name="My Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
    )
    demo_source = Source.objects.get(name=DEMO_SOURCE)
    # Real data reaches it; an event sent with the demo source's write key is demo data.
    assert (
        post_ingest("identify", {"userId": "real-1", "traits": {"plan": "pro"}}).status_code == 200
    )
    sent = post_ingest(
        "identify",
        {"userId": "demo-ada", "traits": {"plan": "pro"}},
        write_key=demo_source.write_key,
    )
    assert sent.status_code == 200
    alan = Profile.objects.get(user_id="demo-alan")
    entry = profile_merge(survivor=alan, absorbed=[Profile.objects.get(user_id="demo-alan-2")])
    merge_undo(entry)
    resent = Event.objects.filter(source__name__startswith="Switchboard (internal")
    assert resent.count() == 3  # the survivor after the merge, both users after the undo

    def done() -> bool:
        return not Delivery.objects.exclude(status__in=FINISHED).exists() and {
            "demo-alan",
            "demo-alan-2",
        } <= user_ids_sent(demo_refiner)

    wait_until(done, 30, lambda: unfinished() + worker.describe())
    assert user_ids_sent(fake_refiner) == {"real-1"}
    assert set(
        Delivery.objects.filter(destination=mine).values_list("event__user_id", flat=True)
    ) == {"real-1"}

    removed = remove_demo()
    assert removed["destinations"] == 3
    assert not demo_loaded()
    assert list(Event.objects.values_list("user_id", flat=True)) == ["real-1"]
    assert list(Source.objects.values_list("name", flat=True)) == ["Web app"]
    assert list(Destination.objects.all()) == [mine]


def test_nothing_about_demo_users_reaches_webhooks_or_real_refiner_contacts(
    source: Source,
    fake_refiner: FakeRefiner,
    demo_refiner: FakeRefiner,
    post_ingest: IngestPost,
    settings: Any,
) -> None:
    """Switchboard's own events (a merge, a delivery failed for good) and the deletion of
    contacts in Refiner: a demo user's stay with the demo."""
    settings.ALLOW_PRIVATE_URLS = True
    watchers = [
        destination_create(
            kind="webhook",
            name=f"Watch {trigger}",
            settings_values={"url": "http://127.0.0.1:9/hook", "trigger": trigger},
            secret_values={},
        )
        for trigger in (USER_CHANGED, DELIVERY_FAILED)
    ]
    seed_demo(refiner_url=demo_refiner.base_url, kana_url="http://127.0.0.1:9/graphql")
    mine = destination_create(
        kind="refiner",
        name="My Refiner",
        settings_values={"base_url": fake_refiner.base_url},
        secret_values={"api_key": "rk_test"},
    )
    wrong_key = Delivery.objects.filter(destination__name="Refiner, wrong key (demo)")
    engine.deliver(list(wrong_key.values_list("pk", flat=True)[:5]))
    assert wrong_key.filter(status=DeliveryStatus.FAILED).count() == 5
    entry = profile_merge(
        survivor=Profile.objects.get(user_id="demo-alan"),
        absorbed=[Profile.objects.get(user_id="demo-alan-2")],
        delete_absorbed_in_refiner=True,
    )
    assert not Event.objects.filter(event__in=["User Merged", "Delivery Failed"]).exists()
    assert not Delivery.objects.filter(destination__in=watchers).exists()
    outcomes = delete_contacts(entry.pk, [{"user_id": "demo-alan-2", "email": None}])
    # Asked of both demo Refiner destinations (the stand-in has no such contact yet: nothing
    # was delivered), never of the operator's own.
    assert sorted(o.split(":")[0] for o in outcomes) == [
        "Refiner (demo)",
        "Refiner, wrong key (demo)",
    ]
    assert not fake_refiner.requests_to("/contact", "DELETE")
    assert len(demo_refiner.requests_to("/contact", "DELETE")) == 2

    # A real user's merge still tells the webhook, and its contact is deleted in Refiner.
    for user_id in ("real-1", "real-2"):
        post_ingest("identify", {"userId": user_id, "traits": {"email": "same@x.co"}})
    real = profile_merge(
        survivor=Profile.objects.get(user_id="real-1"),
        absorbed=[Profile.objects.get(user_id="real-2")],
    )
    assert Event.objects.filter(event="User Merged").count() == 1
    assert Delivery.objects.filter(destination=watchers[0]).count() == 1
    outcomes = delete_contacts(real.pk, [{"user_id": "real-2", "email": None}])
    assert any(o.startswith(f"{mine.name}: ") for o in outcomes)
    assert [r.query for r in fake_refiner.requests_to("/contact", "DELETE")] == [{"id": "real-2"}]


# --- Remove demo data: what goes, then the counts move at once --------------------------------


def test_remove_demo_data_asks_first_with_what_goes(
    client: Client, make_member: MakeMember, source: Source, post_ingest: IngestPost
) -> None:
    client.force_login(make_member("admin-1", role="admin"))
    seeded = seed_demo(refiner_url="http://127.0.0.1:9/v1", kana_url="http://127.0.0.1:9/graphql")
    kana = Destination.objects.get(name="Kana (demo)")
    rule_save(destination=kana, event_name="Seat Added", conditions=[], feature_id="seats")
    filters.save(kana, [[{"path": "event", "op": "equals", "value": "Viewed Pricing"}]])
    assert post_ingest("track", {"userId": "real-1", "event": "Report Exported"}).status_code == 200

    page = client.get(reverse("demo-remove"))
    assert page.status_code == 200
    text = page.content.decode()
    assert Event.objects.filter(source__demo=True).count() == seeded["events"]
    assert re.search(rf'id="remove-events">{seeded["events"]} ', text)
    assert 'id="remove-users">10 ' in text and 'id="remove-accounts">3 ' in text
    assert "Kana (demo): <span" in text
    assert "2 mapping rules, 1 filter, 1 delivery of your own events" in text
    # Asking changed nothing.
    assert demo_loaded() and Destination.objects.filter(demo=True).count() == 3

    done = client.post(reverse("demo-remove"))
    assert done.status_code == 302 and not demo_loaded()
    assert list(Event.objects.values_list("user_id", flat=True)) == ["real-1"]
    after = client.get(reverse("demo-remove")).content.decode()
    assert "No demo data is loaded." in after and ">Remove demo data</button>" not in after


def test_counts_cached_in_one_process_are_counted_again_after_a_change_in_another(
    source: Source, post_ingest: IngestPost, settings: Any
) -> None:
    """Two web processes, as ``start`` runs them: one removes the demo data, the other must not
    show the old counts from its own cache."""
    for user_id in ("u-1", "u-2"):
        post_ingest("identify", {"userId": user_id, "traits": {"email": "same@x.co"}})
    assert cached_conflict_counts()["duplicate_emails"] == 1
    Profile.objects.filter(user_id="u-2").delete()
    assert cached_conflict_counts()["duplicate_emails"] == 1  # still the cached count
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from destinations.web.freshness import counts_changed; counts_changed()",
        ],
        cwd=ROOT,
        env={**os.environ, "SWITCHBOARD_DATA_DIR": str(settings.DATA_DIR)},
        check=True,
        timeout=60,
    )
    assert cached_conflict_counts()["duplicate_emails"] == 0

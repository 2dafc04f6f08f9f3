"""Demo data: a source, users with conflicts, accounts, events, and Refiner and Kana
destinations pointing at local stand-ins. Everything it makes is marked (``demo`` on sources
and destinations; ``demo-`` user and group ids; ``@demo.example`` emails: see
``destinations.demo_marks``), is delivered to the stand-ins only, and is removed in one go,
with what the operator's merges of demo users made (their re-sent identify events).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from destinations.connectors.kana.rules import rule_save
from destinations.delivery.routing import forget_cached_destinations
from destinations.delivery.services import destination_create
from destinations.demo_marks import DEMO_DOMAIN, DEMO_PREFIX, demo_loaded, demo_people
from destinations.ingest.store import store_messages
from destinations.messages.message import validate_message
from destinations.models import Account, Destination, Event, Profile, Source
from destinations.sources import INTERNAL_SOURCE

DEMO_SOURCE = "Demo web app"
DEMO_REFINER = "Refiner (demo)"
DEMO_KANA = "Kana (demo)"
# The keys the stand-ins accept: shown in the demo banner, for destinations of one's own.
DEMO_REFINER_KEY = "rk_demo"
DEMO_KANA_KEY = "prv_demo"
DEMO_FEATURES = (("exports", "Report exports"), ("seats", "Seats"), ("api-calls", "API calls"))
PEOPLE = [
    # user id, name, email, billing id
    ("demo-ada", "Ada Lovelace", "ada@demo.example", "cus_DemoAda1"),
    ("demo-grace", "Grace Hopper", "grace@demo.example", "cus_DemoGrace2"),
    ("demo-alan", "Alan Turing", "alan@demo.example", None),
    ("demo-alan-2", "Alan M. Turing", "alan@demo.example", "cus_DemoAlan3"),  # same email
    ("demo-katherine", "Katherine Johnson", "kj@demo.example", None),
    ("demo-margaret", "Margaret Hamilton", "margaret@demo.example", "cus_DemoMargaret4"),
    ("demo-margaret-old", "Margaret H.", "margaret@demo.example", None),  # same email
    ("demo-linus", "Linus T.", "linus@demo.example", "not-a-customer-id"),  # invalid billing id
    ("demo-barbara", "Barbara Liskov", "barbara@demo.example", "AzZTZgSs9sXh71Xo"),
    ("demo-dennis", "Dennis Ritchie", "dennis@demo.example", None),
]
ACCOUNTS = [
    ("demo-acme", "Acme Corp", 120),
    ("demo-initech", "Initech", 45),
    ("demo-hooli", "Hooli", 800),
]
TRACKS = ["Report Exported", "Seat Added", "Viewed Dashboard", "Invited Teammate"]


def seed_demo(*, refiner_url: str, kana_url: str) -> dict[str, int]:
    """Idempotent: a second call only points the demo destinations at the stand-ins again."""
    if demo_loaded():
        Destination.objects.filter(demo=True, kind="refiner").update(
            settings={"base_url": refiner_url}
        )
        Destination.objects.filter(demo=True, kind="kana").update(settings={"api_url": kana_url})
        forget_cached_destinations()
        return {"events": 0}
    with transaction.atomic():
        source = Source.objects.create(name=DEMO_SOURCE, demo=True)
        refiner = {"base_url": refiner_url}
        made = [
            destination_create(
                kind="refiner",
                name=DEMO_REFINER,
                settings_values=refiner,
                secret_values={"api_key": DEMO_REFINER_KEY},
            ),
            # A revoked key: permanent failures, with their samples on the Event delivery page.
            destination_create(
                kind="refiner",
                name="Refiner, wrong key (demo)",
                settings_values=refiner,
                secret_values={"api_key": "rk_revoked_demo_key"},
            ),
            destination_create(
                kind="kana",
                name=DEMO_KANA,
                settings_values={"api_url": kana_url},
                secret_values={"api_key": DEMO_KANA_KEY},
            ),
        ]
        Destination.objects.filter(pk__in=[d.pk for d in made]).update(demo=True)
        kana = made[2]
        rule_save(
            destination=kana, event_name="Report Exported", conditions=[], feature_id="exports"
        )
        forget_cached_destinations()
    stored = store_demo_events(source)
    return {"events": stored}


@dataclass(frozen=True)
class StandIn:
    service: str
    url: str
    api_key: str


def demo_stand_ins() -> list[StandIn]:
    """Where the stand-ins listen and the key each accepts, as the demo destinations say: a
    destination of one's own can point there too (it gets real events, not the demo's)."""
    found = dict(
        Destination.objects.filter(demo=True, name__in=[DEMO_REFINER, DEMO_KANA]).values_list(
            "name", "settings"
        )
    )
    stand_ins = []
    for name, service, setting, key in (
        (DEMO_REFINER, "Refiner", "base_url", DEMO_REFINER_KEY),
        (DEMO_KANA, "Kana", "api_url", DEMO_KANA_KEY),
    ):
        url = (found.get(name) or {}).get(setting)
        if url:
            stand_ins.append(StandIn(service=service, url=str(url), api_key=key))
    return stand_ins


def store_demo_events(source: Source) -> int:
    rng = random.Random(7)
    now = timezone.now()
    messages = demo_messages(rng)
    validated = []
    for offset, message in enumerate(messages):
        # Spread over the last day and a half, oldest first, as if they had come in over time.
        when = now - timedelta(minutes=(len(messages) - offset) * 7)
        message["timestamp"] = when.isoformat()
        message["context"] = {"library": {"name": "switchboard-demo"}}
        validated.append(validate_message(message, call_type=None, received_at=now))
    return store_messages(
        source_id=source.pk, messages=validated, received_at=now, demo=True
    ).stored


def demo_messages(rng: random.Random) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for index, (user_id, name, email, billing_id) in enumerate(PEOPLE):
        plan = rng.choice(["free", "pro"])
        traits: dict[str, Any] = {"name": name, "email": email, "plan": plan}
        if billing_id:
            traits["billingUserId"] = billing_id
        identify = {"type": "identify", "userId": user_id, "anonymousId": f"demo-anon-{index}"}
        messages.append({**identify, "traits": traits})
        group_id, group_name, employees = ACCOUNTS[index % len(ACCOUNTS)]
        group_traits = {"name": group_name, "employees": employees}
        messages.append(
            {"type": "group", "userId": user_id, "groupId": group_id, "traits": group_traits}
        )
        for _ in range(rng.randint(4, 10)):
            event = rng.choice(TRACKS)
            properties: dict[str, Any] = {"plan": plan}
            if event == "Seat Added":
                properties.update(featureId="seats", delta=rng.randint(1, 3))
            messages.append(
                {"type": "track", "userId": user_id, "event": event, "properties": properties}
            )
        page_url = f"https://app.{DEMO_DOMAIN}/dashboard"
        messages.append(
            {
                "type": "page",
                "userId": user_id,
                "name": "Dashboard",
                "properties": {"url": page_url},
            }
        )
    for visitor in range(8):
        anonymous = {"anonymousId": f"demo-visitor-{visitor}"}
        messages.append({"type": "page", **anonymous, "name": "Pricing"})
        messages.append({"type": "track", **anonymous, "event": "Viewed Pricing"})
    return messages


def demo_events() -> QuerySet[Event]:
    """The demo sources' events (the internal demo source's re-sends among them), and what
    Switchboard said about demo users under its internal source before it had a demo one."""
    demo_sources = list(Source.objects.filter(demo=True).values_list("pk", flat=True))
    made = Q(source_id__in=demo_sources)
    internal = Source.objects.filter(name=INTERNAL_SOURCE).values_list("pk", flat=True).first()
    if internal is not None:
        people = list(Profile.objects.filter(demo_people()).values_list("pk", flat=True))
        made |= Q(source_id=internal, profile_id__in=people)
    return Event.objects.filter(made)


@dataclass(frozen=True)
class DemoDestination:
    name: str
    mapping_rules: int
    filters: int
    # Deliveries of non-demo events in its log, which go with it.
    other_deliveries: int


@dataclass(frozen=True)
class DemoSummary:
    """What "Remove demo data" would delete, counted before the operator confirms."""

    events: int
    users: int
    accounts: int
    sources: list[str]
    destinations: list[DemoDestination]


def demo_summary() -> DemoSummary:
    other = Count("deliveries", filter=~Q(deliveries__event__source__demo=True), distinct=True)
    destinations = Destination.objects.filter(demo=True).annotate(
        rules=Count("mapping_rules", distinct=True), other=other
    )
    return DemoSummary(
        events=demo_events().count(),
        users=Profile.objects.filter(demo_people()).count(),
        accounts=Account.objects.filter(group_id__startswith=DEMO_PREFIX).count(),
        sources=list(Source.objects.filter(demo=True).values_list("name", flat=True)),
        destinations=[
            DemoDestination(
                name=d.name,
                mapping_rules=d.rules,
                filters=len(d.event_filters or []),
                other_deliveries=d.other,
            )
            for d in destinations
        ],
    )


def remove_demo() -> dict[str, int]:
    """Delete everything demo mode made, and nothing else."""
    counts = {"events": 0, "users": 0, "accounts": 0, "destinations": 0}
    events = demo_events()
    while True:
        ids = list(events.values_list("id", flat=True)[:5000])
        if not ids:
            break
        counts["events"] += (
            Event.objects.filter(id__in=ids).delete()[1].get("destinations.Event", 0)
        )
    with transaction.atomic():
        counts["users"] = (
            Profile.objects.filter(demo_people()).delete()[1].get("destinations.Profile", 0)
        )
        counts["accounts"] = (
            Account.objects.filter(group_id__startswith=DEMO_PREFIX)
            .delete()[1]
            .get("destinations.Account", 0)
        )
        counts["destinations"] = (
            Destination.objects.filter(demo=True).delete()[1].get("destinations.Destination", 0)
        )
        Source.objects.filter(demo=True).delete()
    forget_cached_destinations()
    return counts

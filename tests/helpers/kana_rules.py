"""Mapping rules, editor forms, events and the queries of Kana's dashboard pages, as its tests
make and read them."""

from __future__ import annotations

from typing import Any

from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from destinations.connectors.kana.rules import rule_save
from destinations.delivery.services import destination_create
from destinations.models import Destination, MappingRule

KEY = "prv_test"


HX = {"HX-Request": "true"}


# Every dashboard page also reads the session, the user and the user's role.
PAGE_QUERY_CEILING = 10  # the frame: session, user, role, demo banner, conflict counts


def page_data_queries(queries: CaptureQueriesContext) -> list[str]:
    """The queries a page makes for destinations, rules and deliveries."""
    tables = ('"destinations_destination"', '"destinations_mappingrule"', '"destinations_delivery"')
    return [q["sql"] for q in queries.captured_queries if any(t in q["sql"] for t in tables)]


def track(n: int, event: str = "Report Exported", **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": f"u{n}",
        "messageId": f"m{n}-{event}",
        "event": event,
        "properties": properties,
    }


def rule(destination: Destination, event_name: str, feature: str, **extra: Any) -> MappingRule:
    saved, _ = rule_save(
        destination=destination,
        event_name=event_name,
        conditions=extra.pop("conditions", []),
        feature_id=feature,
        **extra,
    )
    return saved


def rule_form(event_name: str = "", feature: str = "", **more: Any) -> dict[str, Any]:
    """An editor POST: ``rows`` is a list of (path as typed, operator, value)."""
    rows = more.pop("rows", [])
    return {
        "event_name": event_name,
        "feature_id": feature,
        "enabled": "on",
        "path": [r[0] for r in rows],
        "op": [r[1] for r in rows],
        "value": [r[2] for r in rows],
        **more,
    }


def urls(destination: Destination) -> dict[str, str]:
    pk = destination.pk
    return {
        "rules": reverse("mapping-rules", args=[pk]),
        "new": reverse("mapping-rule-new", args=[pk]),
        "preview": reverse("mapping-rule-preview", args=[pk]),
        "unmapped": reverse("mapping-unmapped", args=[pk]),
        "filters": reverse("destination-filters", args=[pk]),
        "remove_filter": reverse("destination-filter-remove", args=[pk]),
    }


def kana_with_rule(fake: Any) -> Destination:
    """A Kana destination on the stand-in ``fake`` (a ``FakeKana``), with an "exports" feature
    and a rule mapping "Report Exported" to it: made after history was stored, it has received
    none of it."""
    fake.add_feature("exports", "Exports")
    kana = destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": fake.base_url},
        secret_values={"api_key": KEY},
    )
    rule(kana, "Report Exported", "exports")
    return kana

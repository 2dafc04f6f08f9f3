"""Delete contacts in every Refiner destination, after a merge or delete that asked for it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from destinations.connectors.refiner import KIND
from destinations.connectors.refiner.connector import auth_headers, base_url
from destinations.delivery.contract import error_text
from destinations.delivery.http import session
from destinations.demo_marks import any_demo_person
from destinations.models import AuditEntry, Destination

logger = logging.getLogger(__name__)


def delete_contacts(entry_id: int, people: Sequence[Mapping[str, str | None]]) -> list[str]:
    """DELETE /contact by id (else email) in each enabled Refiner destination (a demo user's
    only in the demo ones); the outcome of each call is appended to the audit entry, where the
    operator reads it."""
    outcomes: list[str] = []
    demo = {i for i, person in enumerate(people) if any_demo_person([person])}
    for destination in Destination.objects.filter(kind=KIND, enabled=True):
        config = destination.config()
        for index, person in enumerate(people):
            if index in demo and not destination.demo:
                continue
            params: dict[str, Any] = (
                {"id": person["user_id"]} if person.get("user_id") else {"email": person["email"]}
            )
            who = next(iter(params.values()))
            try:
                response = session().delete(
                    base_url(config) + "/contact",
                    params=params,
                    headers=auth_headers(config),
                    timeout=10,
                )
            except requests.RequestException as exc:
                outcomes.append(f"{destination.name}: could not delete {who}: {exc}")
                continue
            if response.status_code < 300:
                outcomes.append(f"{destination.name}: deleted contact {who}")
            else:
                outcomes.append(
                    f"{destination.name}: deleting {who} failed with HTTP "
                    f"{response.status_code}: {error_text(response)}"
                )
    entry = AuditEntry.objects.get(pk=entry_id)
    entry.data = {**entry.data, "refiner": outcomes}
    entry.save(update_fields=["data"])
    logger.info("Refiner contact deletion for audit entry %s: %s", entry_id, outcomes)
    return outcomes

"""Helpers the audience page tests share: people and events written as ingest leaves them,
the editor's form fields as a browser posts them, and reading a page as an operator does."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.utils import timezone

from destinations import jobs
from destinations.models import Account, Audience, Event, Job, JobKind, Membership, Profile, Source

HX = {"HX-Request": "true"}

TRIAL = {"type": "trait", "path": "plan", "op": "equals", "value": "trial"}
EXPORTED_TWICE = {"type": "event", "event": "Report Exported", "count": "at_least", "times": "2",
                  "within": "7"}  # fmt: skip


def text_of(response: Any) -> str:
    """The body as a reader sees it: entities decoded."""
    return html.unescape(response.content.decode())


def words_of(response: Any) -> str:
    """The text a reader sees, tags dropped (inline ones without a gap) and whitespace
    collapsed."""
    inline = re.sub(r"</?(?:a|code|strong|span|small|em)\b[^>]*>", "", text_of(response))
    return " ".join(re.sub(r"<[^>]+>", " ", inline).split())


def make_user(user_id: str, **fields: Any) -> Profile:
    traits = fields.pop("traits", {})
    return Profile.objects.create(user_id=user_id, traits=traits, **fields)


def make_account(group_id: str, *members: Profile, **fields: Any) -> Account:
    traits = fields.pop("traits", {})
    account = Account.objects.create(group_id=group_id, traits=traits, **fields)
    for member in members:
        Membership.objects.create(account=account, profile=member)
    return account


_messages = iter(range(1, 10**9))


def make_event(
    source: Source,
    profile: Profile,
    name: str,
    *,
    days_ago: float = 0,
    properties: Mapping[str, Any] | None = None,
) -> Event:
    at = timezone.now() - timedelta(days=days_ago)
    payload = {"type": "track", "event": name, "userId": profile.user_id,
               "properties": dict(properties or {})}  # fmt: skip
    return Event.objects.create(
        source=source,
        message_id=f"m-{next(_messages)}",
        type="track",
        user_id=profile.user_id,
        event=name,
        timestamp=at,
        received_at=at,
        profile=profile,
        payload=payload,
    )


def fields_of(place: str, condition: Mapping[str, Any], data: dict[str, Any]) -> None:
    """One condition's inputs, named after its place as the editor names them."""
    kind = condition["type"]
    data[f"{place}-type"] = kind
    if kind == "group":
        data[f"{place}-match"] = condition.get("match", "all")
        for number, inner in enumerate(condition["conditions"], start=1):
            fields_of(f"{place}-{number}", inner, data)
        return
    for key, value in condition.items():
        if key == "where":
            data[f"{place}-wpath"] = [w["path"] for w in value]
            data[f"{place}-wop"] = [w["op"] for w in value]
            data[f"{place}-wvalue"] = [w.get("value", "") for w in value]
        elif key != "type":
            data[f"{place}-{key}"] = value


def editor_data(
    *,
    name: str = "Trial exporters",
    subject: str = "users",
    match: str = "all",
    conditions: Iterable[Mapping[str, Any]] = (TRIAL,),
    destinations: Iterable[int] = (),
    **extra: Any,
) -> dict[str, Any]:
    """The editor's fields as a browser posts them."""
    data: dict[str, Any] = {"name": name, "subject": subject, "match": match}
    for number, condition in enumerate(conditions, start=1):
        fields_of(f"c{number}", condition, data)
    data["destinations"] = [str(pk) for pk in destinations]
    data.update(extra)
    return data


def compute_now(audience: Audience) -> Job:
    """Run the audience's queued computation here, as a worker would."""
    job = Job.objects.filter(kind=JobKind.AUDIENCE, params__audience_id=audience.pk).latest("pk")
    jobs.run_job(job.pk)
    job.refresh_from_db()
    audience.refresh_from_db()
    return job


def row_cells(response: Any, row_id: str) -> list[str]:
    """The text of each cell of the table row with this id."""
    row = re.search(rf'<tr id="{row_id}"[^>]*>(.*?)</tr>', text_of(response), re.S)
    assert row is not None, f"no row #{row_id}"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in cells]

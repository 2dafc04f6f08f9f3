"""Users, accounts and events written straight to the tables, as ingest leaves them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from destinations.models import Account, Event, Membership, Profile, Source

MakeUser = Callable[..., Profile]
MakeEvent = Callable[..., Event]


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def make_user(db: None) -> MakeUser:
    def make(user_id: str, **fields: Any) -> Profile:
        traits = fields.pop("traits", {})
        return Profile.objects.create(user_id=user_id, traits=traits, **fields)

    return make


@pytest.fixture
def make_event(db: None, source: Source, now: datetime) -> MakeEvent:
    counter = iter(range(1, 10**9))

    def make(
        profile: Profile,
        name: str,
        *,
        days_ago: float = 0,
        properties: dict[str, Any] | None = None,
    ) -> Event:
        at = now - timedelta(days=days_ago)
        payload = {"type": "track", "event": name, "userId": profile.user_id,
                   "properties": properties or {}}  # fmt: skip
        return Event.objects.create(
            source=source,
            message_id=f"m-{next(counter)}",
            type="track",
            user_id=profile.user_id,
            event=name,
            timestamp=at,
            received_at=at,
            profile=profile,
            payload=payload,
        )

    return make


@pytest.fixture
def make_account(db: None) -> Callable[..., Account]:
    def make(group_id: str, *members: Profile, **traits: Any) -> Account:
        account = Account.objects.create(group_id=group_id, traits=traits)
        for member in members:
            Membership.objects.create(account=account, profile=member)
        return account

    return make

"""Reads of Refiner's own data (contacts, segments, forms, responses) for the Refiner pages,
through a configured Refiner destination's Base URL and API Key.

Refiner being down, refusing the key or rejecting a filter is an answer to show, not a 500:
every read returns either its value or the error in words (``Fetched``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from destinations.connectors.refiner import KIND
from destinations.connectors.refiner import api as refiner_api
from destinations.crypto import SecretsUnreadable
from destinations.models import Destination, Profile

T = TypeVar("T")

# refiner_api.segments() and forms() ask Refiner for this many per page; the Page they return
# carries the total but not the page length, which "Next" needs.
LIST_PAGE_LENGTH = 100
SECRETS_UNREADABLE = (
    "The Refiner API Key cannot be decrypted: SWITCHBOARD_ENCRYPTION_KEY has changed. "
    "Enter the key again in the destination's settings."
)


@dataclass(frozen=True)
class Fetched(Generic[T]):
    value: T | None = None
    error: str = ""


def fetch(read: Callable[[], T]) -> Fetched[T]:
    try:
        return Fetched(value=read())
    except refiner_api.RefinerApiError as exc:
        return Fetched(error=str(exc))
    except SecretsUnreadable:
        return Fetched(error=SECRETS_UNREADABLE)


@dataclass(frozen=True)
class RefinerChoice:
    """The Refiner destinations there are, and the one the pages read from."""

    options: list[Destination]
    current: Destination | None


def refiner_choice(destination_id: int | None, remembered: int | None = None) -> RefinerChoice:
    """The destination asked for, else the one picked last (``remembered``), else the oldest
    enabled one (else the oldest): adding a Refiner destination does not move the pages to it."""
    options = list(Destination.objects.filter(kind=KIND).order_by("name"))
    by_id = {d.pk: d for d in options}
    current = by_id.get(destination_id or 0) or by_id.get(remembered or 0)
    if current is None and options:
        current = min(
            [d for d in options if d.enabled] or options, key=lambda d: (d.created_at, d.pk)
        )
    return RefinerChoice(options=options, current=current)


@dataclass(frozen=True)
class ContactQuery:
    """The List Contacts module's fields, plus Refiner's search and the page cursor."""

    order_by: str = "first_seen_at"
    form_uuid: str = ""
    segment_uuid: str = ""
    limit: int = 50
    search: str = ""
    cursor: str = ""


def contacts_page(destination: Destination, query: ContactQuery) -> Fetched[refiner_api.Page]:
    return fetch(
        lambda: refiner_api.contacts(
            destination,
            order_by=query.order_by,
            form_uuid=query.form_uuid,
            segment_uuid=query.segment_uuid,
            limit=query.limit,
            cursor=query.cursor,
            search=query.search,
        )
    )


def contact_by_uuid(destination: Destination, uuid: str) -> Fetched[dict[str, Any]]:
    def read() -> dict[str, Any]:
        data = refiner_api.contact(destination, uuid=uuid)
        if not isinstance(data, dict):
            raise refiner_api.RefinerApiError("Refiner answered something other than a contact")
        return data

    return fetch(read)


@dataclass(frozen=True)
class NumberedPage:
    """A page of a list Refiner pages by number (segments, forms)."""

    items: list[dict[str, Any]]
    number: int
    total: int | None
    has_next: bool = field(default=False)


def numbered(page: refiner_api.Page, number: int) -> NumberedPage:
    seen = (number - 1) * LIST_PAGE_LENGTH + len(page.items)
    has_next = page.total is not None and bool(page.items) and seen < page.total
    return NumberedPage(items=page.items, number=number, total=page.total, has_next=has_next)


def segments_page(destination: Destination, *, number: int) -> Fetched[NumberedPage]:
    return fetch(lambda: numbered(refiner_api.segments(destination, page=number), number))


def forms_page(destination: Destination, *, which: str, number: int) -> Fetched[NumberedPage]:
    return fetch(lambda: numbered(refiner_api.forms(destination, which=which, page=number), number))


@dataclass(frozen=True)
class ResponseQuery:
    form_uuid: str = ""
    segment_uuid: str = ""
    limit: int = 50
    cursor: str = ""


def responses_page(destination: Destination, query: ResponseQuery) -> Fetched[refiner_api.Page]:
    return fetch(
        lambda: refiner_api.responses(
            destination,
            form_uuid=query.form_uuid,
            segment_uuid=query.segment_uuid,
            limit=query.limit,
            cursor=query.cursor,
        )
    )


def profiles_by_user_id(user_ids: Iterable[Any]) -> dict[str, int]:
    """Our users for Refiner's ``remote_id``s (one query), to link a contact to its user page."""
    wanted = {str(u) for u in user_ids if u}
    if not wanted:
        return {}
    rows = Profile.objects.filter(user_id__in=wanted, merged_into__isnull=True)
    return {str(user_id): pk for user_id, pk in rows.values_list("user_id", "pk")}


def linked_to_users(
    items: list[dict[str, Any]], key: str | None = None
) -> list[tuple[dict[str, Any], int | None]]:
    """Each item with the id of our user whose userId is its ``remote_id`` (or its ``key``
    object's, e.g. a response's "contact"), found in one query for the whole page."""

    def remote_id(item: dict[str, Any]) -> str:
        holder = item.get(key) if key else item
        return str(holder.get("remote_id") or "") if isinstance(holder, dict) else ""

    profiles = profiles_by_user_id(remote_id(item) for item in items)
    return [(item, profiles.get(remote_id(item))) for item in items]

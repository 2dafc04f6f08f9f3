"""Keyset ("seek") pagination on descending ids: page N costs the same as page 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db.models import Model, QuerySet

T = TypeVar("T", bound=Model)


@dataclass(frozen=True)
class KeysetPage(Generic[T]):
    rows: list[T]
    next_before: int | None  # pass as ?before= for the next (older) page


# Ids are 64-bit signed on both databases: a cursor past the largest is "before every row".
MAX_CURSOR = 2**63 - 1
# Numbered pages turn into OFFSETs; past this no installation has rows (a page past the end
# shows the last page).
MAX_PAGE_NUMBER = 10**9


def parse_cursor(value: Any) -> int | None:
    """A positive id from a query string, or None; one too large for the database is clamped
    (``?before=`` a number past every id is the first page, as it reads)."""
    try:
        cursor = int(value)
    except (TypeError, ValueError):
        return None
    return min(cursor, MAX_CURSOR) if cursor > 0 else None


def parse_page_number(value: Any) -> int:
    """A page number from 1; missing or nonsense is page 1, a huge one the nearest we count."""
    return min(parse_cursor(value) or 1, MAX_PAGE_NUMBER)


def keyset_page(queryset: QuerySet[T], *, before: int | None, size: int) -> KeysetPage[T]:
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    rows = list(queryset.order_by("-id")[: size + 1])
    next_before = rows[size - 1].pk if len(rows) > size else None
    return KeysetPage(rows=rows[:size], next_before=next_before)

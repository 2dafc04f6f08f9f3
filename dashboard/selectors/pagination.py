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


def parse_cursor(value: Any) -> int | None:
    try:
        cursor = int(value)
    except (TypeError, ValueError):
        return None
    return cursor if cursor > 0 else None


def keyset_page(queryset: QuerySet[T], *, before: int | None, size: int) -> KeysetPage[T]:
    if before is not None:
        queryset = queryset.filter(id__lt=before)
    rows = list(queryset.order_by("-id")[: size + 1])
    next_before = rows[size - 1].pk if len(rows) > size else None
    return KeysetPage(rows=rows[:size], next_before=next_before)

"""Rows and columns read back raw, without the model's conversions."""

from __future__ import annotations

from typing import Any

from django.db import connection

from destinations.identity.bulk_write import concrete_field
from destinations.identity.resolve import PROFILE_FIELDS
from destinations.models import Profile

LONG_EMAIL = "x" * 330 + "@example.com"  # longer than the column's 320 characters


def raw_rows(table: str, columns: list[str], key: str) -> dict[Any, tuple[Any, ...]]:
    """Column values as the database returns them, without the model's conversions."""
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in [key, *columns])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {quote(table)}")
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def profile_columns() -> list[str]:
    return [concrete_field(Profile, name).column for name in PROFILE_FIELDS]

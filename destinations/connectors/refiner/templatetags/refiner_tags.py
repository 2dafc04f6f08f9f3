"""Showing Refiner's values: its ISO timestamps as dates, its answers and attributes as text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils.dateparse import parse_datetime

from destinations.web.display_json import pretty_json, readable

register = template.Library()


@register.filter
def iso_datetime(value: Any) -> datetime | Any:
    """Refiner's "2024-05-14T16:02:11Z" as a datetime for the date filter; anything else as is."""
    if isinstance(value, str):
        try:
            parsed = parse_datetime(value)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
    return value


@register.filter
def plain(value: Any) -> str:
    """An attribute or an answer as one line: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return readable(value)
    return pretty_json(value, indent=None, sort_keys=False)

"""JSON for reading on a page, total over anything a database gives back.

Stored payloads can hold what orjson will not write (integers past 64 bits: PostgreSQL's jsonb
hands a big float back as one) and refusal excerpts are parsed leniently, so they may hold lone
surrogates that no page can encode. Every page that shows stored JSON goes through here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from destinations.messages.body import MAX_JSON_DEPTH, pruned

SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Deeper than anything Switchboard accepts; refusal excerpts can be deeper still.
SHOWN_DEPTH = MAX_JSON_DEPTH * 2


def readable(text: str) -> str:
    """``text`` with lone surrogates written as their escapes (``\\ud800``), so it encodes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def pretty_json(value: Any, *, indent: int | None = 2, sort_keys: bool = True) -> str:
    """JSON text of ``value``, whatever it holds: indented, or on one line (``indent=None``,
    with the standard library's spacing: ``["a", "b"]``)."""
    if indent == 2:
        try:
            # The fast path: orjson is many times quicker on a page of a hundred rows.
            option = orjson.OPT_INDENT_2 | (orjson.OPT_SORT_KEYS if sort_keys else 0)
            return orjson.dumps(value, option=option).decode()
        except (orjson.JSONEncodeError, TypeError):
            pass  # a number past 64 bits, a lone surrogate, too deep: the careful path
    text = json.dumps(
        pruned(value, SHOWN_DEPTH),
        indent=indent,
        sort_keys=sort_keys,
        ensure_ascii=False,
        default=str,
    )
    return readable(text)


def parsed_or_none(text: str) -> Any:
    """``text`` parsed as JSON, or None when it is not JSON (cut short, too deep, not JSON).
    Escapes of lone surrogates stay escapes: as characters no page could encode them."""
    try:
        value = pruned(json.loads(text), SHOWN_DEPTH)
    except (ValueError, RecursionError):
        return None
    return encodable(value) if SURROGATE_ESCAPE.search(text) else value


def encodable(value: Any) -> Any:
    """``value`` with every string (keys too) made encodable by ``readable``."""
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, list):
        return [encodable(item) for item in value]
    if isinstance(value, dict):
        return {readable(key): encodable(item) for key, item in value.items()}
    return value

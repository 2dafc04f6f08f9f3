"""An audience's definition in words, for its page: each condition described, audiences it uses
named and linked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from destinations.audiences.definition import MATCHES, describe
from destinations.models import Audience


@dataclass(frozen=True)
class Words:
    """One condition in words; an audience condition links to the audience it uses."""

    text: str
    audience: Audience | None = None
    missing_audience: int | None = None
    match: str = ""  # a group's "all of" / "any of"
    children: list[Words] = field(default_factory=list)


def definition_words(definition: Mapping[str, Any]) -> tuple[str, list[Words]]:
    """("all of" or "any of", the conditions in words), audiences named."""
    used = {
        c.get("audience")
        for c in _leaves(definition)
        if c.get("type") == "audience" and isinstance(c.get("audience"), int)
    }
    named = {a.pk: a for a in Audience.objects.filter(pk__in=used)} if used else {}
    return _match_words(definition), [_words(c, named) for c in _conditions(definition)]


def _conditions(group: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    conditions = group.get("conditions")
    return [c for c in conditions if isinstance(c, Mapping)] if isinstance(conditions, list) else []


def _leaves(group: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for condition in _conditions(group):
        if condition.get("type") == "group":
            yield from _leaves(condition)
        else:
            yield condition


def _match_words(group: Mapping[str, Any]) -> str:
    return MATCHES.get(str(group.get("match")), "all of")


def _words(condition: Mapping[str, Any], named: Mapping[int, Audience]) -> Words:
    kind = condition.get("type")
    if kind == "group":
        children = [_words(c, named) for c in _conditions(condition)]
        return Words(text="", match=_match_words(condition), children=children)
    if kind == "audience":
        pk = condition.get("audience")
        way = "in" if condition.get("in", True) else "not in"
        audience = named.get(pk) if isinstance(pk, int) else None
        if audience is None:
            return Words(text=f"{way} audience", missing_audience=pk if isinstance(pk, int) else 0)
        return Words(text=f"{way} audience", audience=audience)
    try:
        return Words(text=describe(condition))
    except (KeyError, TypeError):  # stored before a format change: show what is there
        return Words(text=repr(dict(condition)))

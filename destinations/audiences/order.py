"""Audiences that use other audiences: in which order to compute them, and no cycles."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from destinations.audiences.definition import referenced_audiences
from destinations.models import Audience


class AudienceCycle(ValueError):
    """An audience would (through others) depend on itself."""


def dependency_order(audiences: Sequence[Audience]) -> list[Audience]:
    """Each audience after the audiences its conditions use (those among ``audiences``)."""
    by_id = {a.pk: a for a in audiences}
    uses = {a.pk: referenced_audiences(a.definition) & by_id.keys() for a in audiences}
    ordered: list[Audience] = []
    done: set[int] = set()

    def visit(pk: int, path: tuple[int, ...]) -> None:
        if pk in done:
            return
        if pk in path:
            raise AudienceCycle("audiences cannot use each other in a circle")
        for used in sorted(uses[pk]):
            visit(used, (*path, pk))
        done.add(pk)
        ordered.append(by_id[pk])

    for audience in sorted(audiences, key=lambda a: a.pk):
        visit(audience.pk, ())
    return ordered


def check_no_cycle(
    audience_id: int | None, uses: Iterable[int], graph: Mapping[int, set[int]]
) -> None:
    """Refuse a definition for ``audience_id`` (None: a new one) that uses ``uses`` if any of
    them leads back to it. ``graph``: every other audience's uses."""
    if audience_id is None:
        return
    seen: set[int] = set()
    stack = list(uses)
    while stack:
        pk = stack.pop()
        if pk == audience_id:
            raise AudienceCycle("that would make audiences use each other in a circle")
        if pk in seen:
            continue
        seen.add(pk)
        stack.extend(graph.get(pk, ()))


def dependents(audience_id: int, audiences: Sequence[Audience]) -> list[Audience]:
    """Audiences that use ``audience_id``, directly or through others, in computing order."""
    uses = {a.pk: referenced_audiences(a.definition) for a in audiences}
    found: set[int] = set()
    frontier = {audience_id}
    while frontier:
        frontier = {pk for pk, used in uses.items() if used & frontier and pk not in found}
        found |= frontier
    return [a for a in dependency_order(list(audiences)) if a.pk in found]

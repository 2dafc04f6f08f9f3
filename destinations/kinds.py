"""The destination kinds, one line each. Everything about a kind lives in its package
(``destinations/connectors/<kind>/``); this table is how the rest of Switchboard finds it.

A kind's package provides ``connector.CONNECTOR`` (the ``Connector`` the engine delivers
through) and may provide ``urls`` (its dashboard pages: ``urlpatterns`` and ``URL_ROLES``),
``hook_urls`` (public endpoints) and ``templates/``. The engine never imports a kind: it asks
this registry, which imports the kind's connector the first time it is needed, so a kind may
use the engine's services without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from destinations.delivery.contract import Connector
    from destinations.web.roles import UrlRoles


@dataclass(frozen=True)
class Kind:
    name: str  # stored in Destination.kind
    label: str
    package: str


KINDS: tuple[Kind, ...] = (
    Kind("refiner", "Refiner", "destinations.connectors.refiner"),
    Kind("kana", "Kana", "destinations.connectors.kana"),
    Kind("webhook", "Webhook", "destinations.connectors.webhook"),
)
BY_NAME = {kind.name: kind for kind in KINDS}


def kind_choices() -> list[tuple[str, str]]:
    """``Destination.kind``'s choices: a callable, so adding a kind needs no migration."""
    return [(kind.name, kind.label) for kind in KINDS]


def kind_label(name: str) -> str:
    kind = BY_NAME.get(name)
    return kind.label if kind else name


@cache
def _load(name: str) -> Connector:
    connector: Connector = import_module(f"{BY_NAME[name].package}.connector").CONNECTOR
    return connector


class _Connectors(Mapping[str, "Connector"]):
    """Every kind's connector by kind name, each imported on first use."""

    def __getitem__(self, name: str) -> Connector:
        if name not in BY_NAME:
            raise KeyError(name)
        return _load(name)

    def __iter__(self) -> Iterator[str]:
        return iter(BY_NAME)

    def __len__(self) -> int:
        return len(BY_NAME)


CONNECTORS: Mapping[str, Connector] = _Connectors()


def connector_for(kind: str) -> Connector:
    try:
        return CONNECTORS[kind]
    except KeyError:
        raise LookupError(f"No connector for destination kind {kind!r}") from None


@cache
def event_fault_prefixes() -> tuple[str, ...]:
    """Every kind's failed-Skip reasons: a failure that begins so is the event's own fault."""
    return tuple(prefix for c in CONNECTORS.values() for prefix in c.event_fault_prefixes)


def optional_module(kind: Kind, name: str) -> str | None:
    """``<kind package>.<name>`` if the kind has that module (``urls``, ``hook_urls``)."""
    from importlib.util import find_spec

    dotted = f"{kind.package}.{name}"
    return dotted if find_spec(dotted) is not None else None


def kind_url_roles() -> UrlRoles:
    """Every kind's ``URL_ROLES``: who may read and change each of its pages."""
    roles: UrlRoles = {}
    for kind in KINDS:
        if urls := optional_module(kind, "urls"):
            roles.update(import_module(urls).URL_ROLES)
    return roles

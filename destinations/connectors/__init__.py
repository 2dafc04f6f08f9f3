"""One module per destination kind; this registry is how the engine finds them."""

from __future__ import annotations

from destinations.connectors.base import Connector
from destinations.connectors.kana import KanaConnector
from destinations.connectors.refiner import RefinerConnector
from destinations.connectors.webhook import WebhookConnector

CONNECTORS: dict[str, Connector] = {
    c.kind: c for c in (RefinerConnector(), KanaConnector(), WebhookConnector())
}


# Every kind's failed-Skip reasons: a failure that begins so is the event's own fault.
EVENT_FAULT_PREFIXES: tuple[str, ...] = tuple(
    prefix for c in CONNECTORS.values() for prefix in c.event_fault_prefixes
)


def connector_for(kind: str) -> Connector:
    try:
        return CONNECTORS[kind]
    except KeyError:
        raise LookupError(f"No connector for destination kind {kind!r}") from None

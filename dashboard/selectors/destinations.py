"""Reads for the Destinations list, the settings form and the retry job's progress."""

from __future__ import annotations

from dataclasses import dataclass

from destinations.crypto import SecretsUnreadable
from destinations.delivery.contract import Connector
from destinations.delivery.services import retryable
from destinations.kinds import CONNECTORS, kind_choices
from destinations.models import Delivery, Destination, Job


@dataclass(frozen=True)
class KindChoice:
    kind: str
    label: str
    calls: list[str]  # the Segment calls this kind accepts, for the operator to choose by


def destination_kinds() -> list[KindChoice]:
    """Every kind that has a connector: only those can be configured."""
    return [
        KindChoice(kind, label, sorted(CONNECTORS[kind].accepts))
        for kind, label in kind_choices()
        if kind in CONNECTORS
    ]


def connector_of(kind: str) -> Connector | None:
    return CONNECTORS.get(kind)


def stored_secrets(destination: Destination) -> tuple[dict[str, str], bool]:
    """The destination's decrypted secrets, and whether they could be read at all (they cannot
    once the encryption key is replaced without keeping the old one for decryption)."""
    try:
        return destination.secrets, True
    except SecretsUnreadable:
        return {}, False


def failed_count(destination: Destination) -> int:
    """Failed deliveries Retry all failed would send again."""
    return Delivery.objects.filter(retryable(), destination=destination).count()


def job_with_destination(job_id: int) -> tuple[Job, Destination | None] | None:
    """A job and the destination it works on (jobs name theirs in ``params``)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    destination_id = job.params.get("destination_id")
    destination = Destination.objects.filter(pk=destination_id).first() if destination_id else None
    return job, destination

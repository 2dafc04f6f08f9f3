"""Recovery paths of the engine that need no worker: stale jobs, unknown kinds, lost keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.utils import timezone

from destinations.crypto import _fernet
from destinations.delivery.routing import enabled_routes, forget_cached_destinations
from destinations.delivery.services import destination_update
from destinations.delivery.sweeper import recover_jobs
from destinations.models import Destination, Job, JobKind, JobStatus

pytestmark = pytest.mark.django_db


def test_jobs_whose_worker_died_or_wake_up_was_lost_are_queued_again(settings: Any) -> None:
    settings.JOB_STALE_SECONDS = 60
    old = timezone.now() - timedelta(seconds=120)
    dead = Job.objects.create(kind=JobKind.RETRY_FAILED, status=JobStatus.RUNNING, heartbeat_at=old)
    lost = Job.objects.create(kind=JobKind.RETRY_FAILED, created_at=old)
    busy = Job.objects.create(
        kind=JobKind.RETRY_FAILED, status=JobStatus.RUNNING, heartbeat_at=timezone.now()
    )
    fresh = Job.objects.create(kind=JobKind.RETRY_FAILED)
    assert recover_jobs() == 2
    statuses = dict(Job.objects.values_list("pk", "status"))
    assert statuses == {
        dead.pk: JobStatus.QUEUED,
        lost.pk: JobStatus.QUEUED,
        busy.pk: JobStatus.RUNNING,
        fresh.pk: JobStatus.QUEUED,
    }
    assert recover_jobs() == 0  # woken once per stale period, not on every sweep


def test_a_destination_of_unknown_kind_does_not_stop_routing(
    refiner_destination: Destination,
) -> None:
    Destination.objects.create(kind="gone", name="Removed kind")
    forget_cached_destinations()
    assert [r.name for r in enabled_routes()] == ["Refiner"]


def test_secrets_lost_to_a_new_key_must_be_entered_again(
    refiner_destination: Destination, settings: Any
) -> None:
    settings.ENCRYPTION_KEY = Fernet.generate_key().decode()
    _fernet.cache_clear()
    keep = {"base_url": refiner_destination.settings["base_url"]}
    with pytest.raises(ValueError, match="API Key cannot be decrypted"):
        destination_update(
            refiner_destination,
            name="Refiner",
            enabled=True,
            settings_values=keep,
            secret_values={},
        )
    destination_update(
        refiner_destination,
        name="Refiner",
        enabled=True,
        settings_values=keep,
        secret_values={"api_key": "rk_new"},
    )
    assert Destination.objects.get().secrets == {"api_key": "rk_new"}

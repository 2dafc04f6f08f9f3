"""Destinations and the deliveries of events to them, with every attempt."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.functions import Coalesce
from django.utils import timezone

from destinations.crypto import decrypt_secrets, encrypt_secrets
from destinations.kinds import kind_choices


class Destination(models.Model):
    """A configured destination: a connector kind plus its settings and health."""

    kind = models.CharField(max_length=16, choices=kind_choices)
    name = models.CharField(max_length=200, unique=True)
    enabled = models.BooleanField(default=True)
    settings = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="")
    # Drop rules: a list of condition lists; an event matching every condition of any one rule
    # is not delivered here. See destinations.delivery.routing.why_not_routed.
    event_filters = models.JSONField(default=list, blank=True)
    rate_limit_per_minute = models.PositiveIntegerField(default=0, help_text="0: connector default")
    # Made by demo mode, and removed with it.
    demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    # Health, written by the delivery engine.
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    consecutive_failures = models.PositiveIntegerField(default=0)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def secrets(self) -> dict[str, str]:
        return decrypt_secrets(self.secrets_encrypted)

    def set_secrets(self, values: dict[str, str]) -> None:
        self.secrets_encrypted = encrypt_secrets(values)

    @property
    def is_active(self) -> bool:
        return self.enabled and self.paused_at is None

    def config(self) -> dict[str, Any]:
        """Settings and decrypted secrets together, as connectors read them."""
        return {**self.settings, **self.secrets}


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    RETRYING = "retrying"
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"


WAITING = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)
FINISHED = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)


class Delivery(models.Model):
    """One event to one destination. Created in the ingest transaction; the database, not the
    broker, is the record of what still has to be sent."""

    event = models.ForeignKey(
        "destinations.Event", on_delete=models.CASCADE, related_name="deliveries"
    )
    destination = models.ForeignKey(
        Destination, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    received_at = models.DateTimeField(help_text="When the event was received: latency starts here")
    next_attempt_at = models.DateTimeField(default=timezone.now)
    retry_until = models.DateTimeField()
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    reason = models.CharField(
        max_length=300,
        blank=True,
        default="",
        help_text="Why it was skipped or failed, short enough to group errors by",
    )
    # What routing decided for this delivery (the connector's ``plan``), read by ``translate``.
    plan = models.JSONField(default=dict, blank=True)
    # The Kana mapping rule that gave this track event its feature, if a rule did.
    mapping_rule = models.ForeignKey(
        "destinations.MappingRule",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    # Made by a replay (None: live traffic). Its own partial index: live rows have none.
    replay = models.ForeignKey(
        "destinations.Replay",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        db_index=False,
        related_name="deliveries",
    )

    class Meta:
        constraints = [
            # One live delivery per event and destination, and one per replay: a replay may
            # send an event again, but never twice. Led by event_id, it also serves the event
            # page's lookups.
            models.UniqueConstraint(
                models.F("event"),
                models.F("destination"),
                Coalesce(models.F("replay"), models.Value(0)),
                name="delivery_event_destination_replay_uniq",
            )
        ]
        indexes = [
            models.Index(
                fields=["replay", "id"],
                condition=models.Q(replay__isnull=False),
                name="delivery_replay_idx",
            ),
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx"),
            models.Index(fields=["destination", "status", "id"], name="delivery_destination_idx"),
            # Status included (PostgreSQL): the Overview's counts per destination, slot and
            # status are then read from the index alone.
            models.Index(
                fields=["destination", "created_at"],
                include=["status"],
                name="delivery_dest_created_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"event {self.event_id} -> {self.destination_id}: {self.status}"

    @property
    def latency_seconds(self) -> float | None:
        if self.status != DeliveryStatus.DELIVERED or self.finished_at is None:
            return None
        return (self.finished_at - self.received_at).total_seconds()


class AttemptOutcome(models.TextChoices):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    SKIPPED = "skipped"


class DeliveryAttempt(models.Model):
    """One try at sending. Request and response are kept in full (truncated) when it did not
    succeed: they are the samples the Event delivery page shows."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    request = models.JSONField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        indexes = [models.Index(fields=["delivery", "number"], name="attempt_delivery_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"


class JobKind(models.TextChoices):
    RETRY_FAILED = "retry_failed", "Retry failed deliveries"
    REPROCESS = "reprocess", "Apply a mapping rule to unmapped events"
    IMPORT = "import", "Import billing customers"
    BULK_MERGE = "bulk_merge", "Merge duplicate-email groups"
    AUDIENCE = "audience", "Compute an audience"
    COMPUTED_TRAIT = "computed_trait", "Compute a computed trait"
    REPLAY = "replay", "Replay history"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    # A replay's: stopped by an operator (or a paused destination) and resumable; or ended early.
    PAUSED = "paused"
    CANCELLED = "cancelled"


class Job(models.Model):
    """A long operation the dashboard shows as a progress bar until it is done."""

    kind = models.CharField(max_length=32, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    params = models.JSONField(default=dict, blank=True)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    counters = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == JobStatus.DONE:
            return 100
        return int(self.done * 100 / self.total) if self.total else 0

"""Refiner posting to us: receivers (one per webhook made in Refiner) and the calls they got."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class RefinerTrigger(models.TextChoices):
    SURVEY_COMPLETED = "Survey Completed"
    SURVEY_SHOWN = "Saw Survey", "Survey shown"
    SURVEY_DISMISSED = "Dismissed Survey", "Survey dismissed"
    ENTERED_SEGMENT = "Entered Segment", "User entered segment"
    ANY = "any", "Any event"


class RefinerReceiver(models.Model):
    """Where one Refiner webhook posts. The token is kept only as a SHA-256 hash: it is shown
    once when made or rotated, then only its last four characters."""

    name = models.CharField(max_length=200, unique=True)
    trigger = models.CharField(
        max_length=32, choices=RefinerTrigger.choices, default=RefinerTrigger.SURVEY_COMPLETED
    )
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    token_hash = models.CharField(max_length=64)
    token_hint = models.CharField(max_length=8)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CallOutcome(models.TextChoices):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    REFUSED = "refused"


class RefinerCall(models.Model):
    """One POST a receiver got, with what became of it."""

    receiver = models.ForeignKey(RefinerReceiver, on_delete=models.CASCADE, related_name="calls")
    received_at = models.DateTimeField(default=timezone.now)
    # Refiner's response uuid (else a hash of the body): a call Refiner repeats is stored once.
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)
    status_code = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=CallOutcome.choices)
    detail = models.TextField(blank=True, default="")
    payload = models.JSONField(null=True, blank=True)
    excerpt = models.TextField(blank=True, default="", help_text="Start of a body that was refused")
    event = models.ForeignKey(
        "destinations.Event", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["receiver", "-id"], name="refiner_call_log_idx")]
        constraints = [
            models.UniqueConstraint(
                fields=["receiver", "idempotency_key"], name="refiner_call_idempotency_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.receiver}: {self.outcome}"

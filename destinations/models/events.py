"""Sources and the append-only event store."""

from __future__ import annotations

import secrets
from typing import Any

from django.db import models
from django.utils import timezone

from destinations.traits import message_traits


def new_write_key() -> str:
    return secrets.token_urlsafe(24)


class Source(models.Model):
    """Where events come from: one write key, embedded in the SDKs that send to it."""

    name = models.CharField(max_length=200, unique=True)
    write_key = models.CharField(max_length=64, unique=True, default=new_write_key)
    enabled = models.BooleanField(default=True)
    rate_limit_per_second = models.PositiveIntegerField(
        default=1000, help_text="Requests per second accepted from this source before 429."
    )
    # Made by demo mode, and removed with it.
    demo = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class EventType(models.TextChoices):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


class Event(models.Model):
    """One accepted Segment call, stored once per (source, messageId).

    The columns are what the dashboard filters on; ``payload`` is the accepted message as the SDK
    sent it (batch envelope context/integrations merged in) plus the fields the server sets.
    Rows are inserted in bulk with raw SQL by ``destinations.ingest.store``; never updated except
    to link a profile once an anonymous id becomes known.
    """

    source = models.ForeignKey(
        Source,
        on_delete=models.PROTECT,
        related_name="events",
        # event_source_message_uniq and event_source_id_idx both start with source_id, so its
        # own index would only cost every insert one more index entry.
        db_index=False,
    )
    message_id = models.CharField(max_length=100)
    type = models.CharField(max_length=16, choices=EventType.choices)
    user_id = models.CharField(max_length=255, null=True, blank=True)
    anonymous_id = models.CharField(max_length=255, null=True, blank=True)
    event = models.CharField(max_length=255, null=True, blank=True)
    name = models.CharField(max_length=255, null=True, blank=True)
    group_id = models.CharField(max_length=255, null=True, blank=True)
    previous_id = models.CharField(max_length=255, null=True, blank=True)
    timestamp = models.DateTimeField()
    original_timestamp = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    profile = models.ForeignKey(
        "Profile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,
        related_name="events",
    )
    # Set while a merge has moved this event from an absorbed profile, so undo can move it back.
    merged_from = models.ForeignKey(
        "destinations.Profile",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,  # a partial index below: almost every row is NULL
        related_name="+",
    )
    payload = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "message_id"], name="event_source_message_uniq"
            )
        ]
        indexes = [
            # Composite (filter, id) indexes serve "newest first" keyset pages per filter.
            models.Index(fields=["user_id", "id"], name="event_user_id_idx"),
            models.Index(fields=["anonymous_id", "id"], name="event_anonymous_id_idx"),
            models.Index(fields=["event", "id"], name="event_name_idx"),
            models.Index(fields=["profile", "id"], name="event_profile_idx"),
            models.Index(fields=["received_at"], name="event_received_at_idx"),
            # Replays walk history in event-time order, from a checkpoint.
            models.Index(fields=["timestamp", "id"], name="event_timestamp_idx"),
            # The live debugger: a source's newest events, even a small source among big ones.
            models.Index(fields=["source", "id"], name="event_source_id_idx"),
            models.Index(
                fields=["merged_from"],
                condition=models.Q(merged_from__isnull=False),
                name="event_merged_from_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.message_id}"

    @property
    def label(self) -> str:
        """What the event is, in a word or two: the event name, page name, or call type."""
        if self.type == EventType.TRACK:
            return self.event or ""
        if self.type in (EventType.PAGE, EventType.SCREEN):
            return self.name or ""
        if self.type == EventType.GROUP:
            return self.group_id or ""
        if self.type == EventType.ALIAS:
            return f"{self.previous_id} → {self.user_id}"
        return ""

    @property
    def properties(self) -> dict[str, Any]:
        value = self.payload.get("properties")
        return value if isinstance(value, dict) else {}

    @property
    def traits(self) -> dict[str, Any]:
        return message_traits(self.payload)


class IngestFailure(models.Model):
    """A message or request a known source sent that was refused, with the reason."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="ingest_failures")
    received_at = models.DateTimeField(default=timezone.now)
    endpoint = models.CharField(max_length=32)
    batch_index = models.IntegerField(null=True, blank=True)
    reason = models.TextField()
    excerpt = models.TextField(blank=True, help_text="Start of what was sent, for diagnosis.")

    class Meta:
        indexes = [
            models.Index(fields=["source", "-received_at"], name="ingest_failure_source_idx")
        ]

    def __str__(self) -> str:
        return self.reason

"""Replays: stored history sent again to one destination, paced, resumable, never twice.

A replay is shown and controlled through its ``Job`` (progress bar, who started it, pause,
resume, cancel); this row holds what to send, and each lane its checkpoint. Events are split
into lanes by user (``profile_id`` modulo the lane count), so a user's events stay in one lane,
sent in timestamp order, while lanes run side by side.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Replay(models.Model):
    job = models.OneToOneField("destinations.Job", on_delete=models.CASCADE, related_name="replay")
    destination = models.ForeignKey(
        "destinations.Destination", on_delete=models.CASCADE, related_name="replays"
    )
    # Event timestamps in [since, until); None: from the first event.
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField()
    # Events received after this were live traffic when the replay began: never replayed.
    received_before = models.DateTimeField(default=timezone.now)
    source_ids = models.JSONField(default=list, blank=True)
    types = models.JSONField(default=list, blank=True)
    names = models.JSONField(default=list, blank=True)
    # Also events this destination already has a delivered row for.
    include_received = models.BooleanField(default=False)
    lanes = models.PositiveSmallIntegerField(default=4)

    def __str__(self) -> str:
        return f"replay {self.pk} to {self.destination_id}"


class ReplayLane(models.Model):
    """One lane's progress: the (timestamp, id) of the last event planned, and the delivery
    rows of its last page, still to be sent when a worker resumes the replay."""

    replay = models.ForeignKey(Replay, on_delete=models.CASCADE, related_name="lane_rows")
    number = models.PositiveSmallIntegerField()
    after_timestamp = models.DateTimeField(null=True, blank=True)
    after_id = models.BigIntegerField(default=0)
    pending_ids = models.JSONField(default=list, blank=True)
    counters = models.JSONField(default=dict, blank=True)
    finished = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["replay", "number"], name="replay_lane_uniq")
        ]

    def __str__(self) -> str:
        return f"lane {self.number} of replay {self.replay_id}"

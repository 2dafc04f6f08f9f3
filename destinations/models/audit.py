"""Who did what, when: every operator action that changes data or settings."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class AuditAction(models.TextChoices):
    MERGE = "merge", "Merged users"
    MERGE_UNDONE = "merge_undone", "Undid a merge"
    DELETE = "delete", "Deleted a user"
    IMPORT = "import", "Imported billing customers"
    BULK_MERGE = "bulk_merge", "Merged duplicate-email groups"
    REFINER_API_CALL = "refiner_api_call", "Called Refiner's API"
    RECEIVER_CHANGED = "receiver_changed", "Changed a Refiner webhook receiver"
    DESTINATION_CHANGED = "destination_changed", "Changed a destination"
    SOURCE_CHANGED = "source_changed", "Changed a source"
    RETRY = "retry", "Retried deliveries"
    RULE_CHANGED = "rule_changed", "Changed a mapping rule or filter"
    MEMBER_CHANGED = "member_changed", "Changed a member or role"
    AUDIENCE_CHANGED = "audience_changed", "Changed an audience"
    REPLAY = "replay", "Replayed history"


class AuditEntry(models.Model):
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    summary = models.TextField()
    # What an undo needs (merges), or the details worth keeping (import counts).
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["action", "-id"], name="audit_action_idx")]

    def __str__(self) -> str:
        return self.summary


class Upload(models.Model):
    """A file an operator uploaded for a job (a CSV import). Kept in the database, not on a
    disk, because the worker that runs the job may be on another machine."""

    name = models.CharField(max_length=255)
    content = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

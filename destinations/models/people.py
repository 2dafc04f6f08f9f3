"""Who events are about: profiles (users), their anonymous ids, accounts (groups)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ProfileOrigin(models.TextChoices):
    EVENTS = "events"
    IMPORT = "import"


class Profile(models.Model):
    """A user. ``user_id`` is canonical when set; imported billing customers may lack one."""

    user_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    email = models.CharField(max_length=320, null=True, blank=True, db_index=True)
    name = models.CharField(max_length=255, blank=True, default="")
    billing_id = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    traits = models.JSONField(default=dict, blank=True)
    origin = models.CharField(
        max_length=16, choices=ProfileOrigin.choices, default=ProfileOrigin.EVENTS
    )
    created_at = models.DateTimeField(default=timezone.now)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="absorbed"
    )

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Duplicate-email groups and email claims look at live profiles only.
            models.Index(
                fields=["email"],
                condition=models.Q(merged_into__isnull=True),
                name="profile_live_email_idx",
            )
        ]

    def __str__(self) -> str:
        return self.user_id or self.email or f"profile {self.pk}"


class SuppressionKind(models.TextChoices):
    USER_ID = "user_id", "userId"
    EMAIL = "email", "email"


class Suppression(models.Model):
    """A deleted user whose future events are dropped at ingest (answered 200, not stored)."""

    kind = models.CharField(max_length=16, choices=SuppressionKind.choices)
    value = models.CharField(max_length=320)
    created_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="suppression_uniq")]

    def __str__(self) -> str:
        return f"{self.kind}={self.value}"


class AnonymousId(models.Model):
    """An anonymous id (or alias previousId) known to belong to a profile."""

    value = models.CharField(max_length=255, unique=True)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="anonymous_ids")
    linked_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.value


class Account(models.Model):
    """A group (company, workspace) from group calls; Refiner's account, Kana's customer."""

    group_id = models.CharField(max_length=255, unique=True)
    name = models.CharField(max_length=255, blank=True, default="")
    traits = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    members: models.ManyToManyField[Profile, Membership] = models.ManyToManyField(
        Profile, through="Membership", related_name="accounts"
    )

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name or self.group_id


class Membership(models.Model):
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["profile", "account"], name="membership_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.profile} in {self.account}"

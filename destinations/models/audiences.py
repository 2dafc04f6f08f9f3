"""Audiences computed here: who is in, since when, what changed, and where it is synced.

An audience's members are users (or accounts) matching its definition (a tree of conditions,
``destinations.audiences.definition``). Membership is kept per (audience, subject) in
``AudienceState`` rows that are never deleted while the subject lives: ``member`` flips, and
``version`` counts the flips, so each change has its own deterministic sync messageId.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from destinations.models.delivery import Destination


class AudienceSubject(models.TextChoices):
    USERS = "users", "Users"
    ACCOUNTS = "accounts", "Accounts"


class Audience(models.Model):
    name = models.CharField(max_length=200, unique=True)
    # The snake_cased name, the trait key destinations see. Fixed once created: downstream
    # tools (Refiner segments, survey targeting) key on it.
    key = models.CharField(max_length=100, unique=True)
    subject = models.CharField(
        max_length=16, choices=AudienceSubject.choices, default=AudienceSubject.USERS
    )
    definition = models.JSONField(default=dict)
    # Bumped by every edit of the definition; a computation reports which one it applied.
    version = models.PositiveIntegerField(default=1)
    destinations: models.ManyToManyField[Destination, AudienceTarget] = models.ManyToManyField(
        "destinations.Destination", through="AudienceTarget", related_name="audiences"
    )
    size = models.PositiveIntegerField(default=0)
    # Set when the first computation starts: from then on it is kept current (live).
    computed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AudienceTarget(models.Model):
    """A destination an audience is synced to; for Refiner, optionally a manual segment kept in
    step with it."""

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="targets")
    destination = models.ForeignKey(
        "destinations.Destination", on_delete=models.CASCADE, related_name="audience_targets"
    )
    refiner_segment = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "destination"], name="audience_target_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.audience_id} -> {self.destination_id}"


class AudienceState(models.Model):
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="states")
    # One of the two, as the audience's subject says. Deleting the user or account deletes
    # its states: it leaves without a sync (there is nobody left to tell about).
    profile = models.ForeignKey(
        "destinations.Profile",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="audience_states",
    )
    account = models.ForeignKey(
        "destinations.Account",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="audience_states",
    )
    member = models.BooleanField(default=False)
    version = models.PositiveIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["audience", "profile"],
                condition=models.Q(profile__isnull=False),
                name="audience_state_profile_uniq",
            ),
            models.UniqueConstraint(
                fields=["audience", "account"],
                condition=models.Q(account__isnull=False),
                name="audience_state_account_uniq",
            ),
        ]
        indexes = [
            models.Index(fields=["audience", "member", "id"], name="audience_state_member_idx"),
            models.Index(fields=["profile"], name="audience_state_profile_idx"),
            models.Index(fields=["account"], name="audience_state_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.audience_id}: {self.profile_id or self.account_id} in={self.member}"


class AudienceChange(models.Model):
    """One subject entering or leaving, for the audience page's last-24-hours counts."""

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="changes")
    subject_id = models.BigIntegerField()  # a profile's or an account's id, as subject says
    entered = models.BooleanField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["audience", "at"], name="audience_change_at_idx")]

    def __str__(self) -> str:
        return f"{self.audience_id}: {self.subject_id} {'in' if self.entered else 'out'}"


class AudienceSize(models.Model):
    """The size after each computation or pass that changed it: the size-over-time chart."""

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="sizes")
    at = models.DateTimeField(default=timezone.now)
    size = models.PositiveIntegerField()

    class Meta:
        indexes = [models.Index(fields=["audience", "at"], name="audience_size_at_idx")]

    def __str__(self) -> str:
        return f"{self.audience_id}: {self.size} at {self.at}"


class ComputedTrait(models.Model):
    """A value per user computed from their events (a count, a first or last property value,
    a first or last time), synced as an ordinary trait under its key."""

    name = models.CharField(max_length=200, unique=True)
    key = models.CharField(max_length=100, unique=True)
    definition = models.JSONField(default=dict)
    destinations: models.ManyToManyField[Destination, ComputedTraitTarget] = models.ManyToManyField(
        "destinations.Destination",
        through="ComputedTraitTarget",
        related_name="computed_traits",
    )
    computed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ComputedTraitTarget(models.Model):
    trait = models.ForeignKey(ComputedTrait, on_delete=models.CASCADE, related_name="targets")
    destination = models.ForeignKey(
        "destinations.Destination", on_delete=models.CASCADE, related_name="trait_targets"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trait", "destination"], name="trait_target_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.trait_id} -> {self.destination_id}"


class ComputedTraitValue(models.Model):
    """A user's current value; ``version`` counts its changes, for the sync's messageId."""

    trait = models.ForeignKey(ComputedTrait, on_delete=models.CASCADE, related_name="values")
    profile = models.ForeignKey(
        "destinations.Profile", on_delete=models.CASCADE, related_name="computed_traits"
    )
    value = models.JSONField(null=True)
    version = models.PositiveIntegerField(default=1)
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trait", "profile"], name="trait_value_uniq")
        ]
        indexes = [models.Index(fields=["profile"], name="trait_value_profile_idx")]

    def __str__(self) -> str:
        return f"{self.trait_id}: {self.profile_id} = {self.value!r}"

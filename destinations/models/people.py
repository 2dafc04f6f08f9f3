"""Who events are about: profiles (users), their anonymous ids, accounts (groups)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.functions import Length, Substr
from django.db.models.lookups import Exact, LessThanOrEqual
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

# Kana's rule for billing ids (``destinations.identity.billing_ids.billing_id_problem``), in SQL, so
# that the users who need one are filtered, counted and paged in the database, and indexed:
# "cus_" and letters or digits (Stripe), or 1 to 50 letters or digits (Chargebee). A test
# checks the two agree on both backends.
STRIPE_PREFIX = "cus_"
CHARGEBEE_MAX_LENGTH = 50


class LettersAndDigits(models.Func):
    """True when the text is one or more ASCII letters or digits. PostgreSQL runs a regex
    (without a ``{1,50}`` bound, which it unrolls: 240 ms against 50 ms for 100,000 users);
    SQLite a ``GLOB``, which runs in C where Django's ``REGEXP`` calls into Python for every
    row (about twice the cost)."""

    arity = 1
    output_field = models.BooleanField()

    def as_postgresql(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(({sql})::text ~ '^[A-Za-z0-9]+$')", params

    def as_sqlite(self, compiler: SQLCompiler, connection: Any, **extra: Any) -> Any:
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(({sql}) <> '' AND ({sql}) NOT GLOB '*[^A-Za-z0-9]*')", [*params, *params]


def missing_billing_id() -> models.Q:
    return models.Q(billing_id__isnull=True) | models.Q(billing_id="")


def kana_billing_id() -> models.Q:
    """A billing id Kana accepts (``billing_id_problem`` is None). The prefix is compared
    exactly: SQLite's ``LIKE`` ignores case, and ``CUS_...`` is not a Stripe id."""
    prefix: Exact[str] = Exact(
        Substr("billing_id", 1, len(STRIPE_PREFIX)), models.Value(STRIPE_PREFIX)
    )
    stripe = models.Q(prefix) & models.Q(
        LettersAndDigits(Substr("billing_id", len(STRIPE_PREFIX) + 1))
    )
    chargebee = models.Q(LettersAndDigits("billing_id")) & models.Q(
        LessThanOrEqual(Length("billing_id"), CHARGEBEE_MAX_LENGTH)
    )
    return stripe | chargebee


def needs_billing_id() -> models.Q:
    """No billing id, or one Kana refuses: the Conflicts page's second list."""
    return missing_billing_id() | ~kana_billing_id()


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
            ),
            # Live users who need a billing id, newest first: the Conflicts page counts and
            # pages them without testing every user's billing id against Kana's rule (a
            # quarter of the rows at 100,000 users; the count drops from ~45 ms to ~5 ms).
            # The query must state the same condition (``needs_billing_id``) to use it.
            models.Index(
                fields=["-id"],
                condition=models.Q(merged_into__isnull=True) & needs_billing_id(),
                name="profile_needs_billing_idx",
            ),
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
    # Both from the group calls' own timestamps, as a user's are: created_at is when the row
    # was made, later than the first call when events arrive late (queued, replayed, seeded).
    first_seen_at = models.DateTimeField(null=True, blank=True)
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

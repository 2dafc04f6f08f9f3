"""The engine's data, one module per area; everything is importable from here."""

from destinations.models.audiences import (
    Audience,
    AudienceChange,
    AudienceSize,
    AudienceState,
    AudienceSubject,
    AudienceTarget,
    ComputedTrait,
    ComputedTraitTarget,
    ComputedTraitValue,
)
from destinations.models.audit import AuditAction, AuditEntry, Upload
from destinations.models.delivery import (
    FINISHED,
    WAITING,
    AttemptOutcome,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Destination,
    Job,
    JobKind,
    JobStatus,
)
from destinations.models.events import Event, EventType, IngestFailure, Source, new_write_key
from destinations.models.lookups import Prefix
from destinations.models.mapping import MappingRule
from destinations.models.people import (
    Account,
    AnonymousId,
    Membership,
    Profile,
    ProfileOrigin,
    Suppression,
    SuppressionKind,
)
from destinations.models.replay import Replay, ReplayLane
from destinations.models.webhooks import CallOutcome, RefinerCall, RefinerReceiver, RefinerTrigger

__all__ = [
    "FINISHED",
    "WAITING",
    "Account",
    "AnonymousId",
    "AttemptOutcome",
    "Audience",
    "AudienceChange",
    "AudienceSize",
    "AudienceState",
    "AudienceSubject",
    "AudienceTarget",
    "AuditAction",
    "AuditEntry",
    "CallOutcome",
    "ComputedTrait",
    "ComputedTraitTarget",
    "ComputedTraitValue",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryStatus",
    "Destination",
    "Event",
    "EventType",
    "IngestFailure",
    "Job",
    "JobKind",
    "JobStatus",
    "MappingRule",
    "Membership",
    "Prefix",
    "Profile",
    "ProfileOrigin",
    "RefinerCall",
    "RefinerReceiver",
    "RefinerTrigger",
    "Replay",
    "ReplayLane",
    "Source",
    "Suppression",
    "SuppressionKind",
    "Upload",
    "new_write_key",
]

"""Who may do what: three roles, each able to do everything the one below it can.

- viewer: reads every page;
- operator: also merges, deletes and imports users, edits mapping rules and filters, retries
  deliveries, resumes destinations, replays history to them, builds and deletes audiences;
- admin: also manages API keys, sources, destinations, webhooks and members.

A user's role is the Django group of that name (superusers are admins; an active user in no
role group, e.g. one made in Django's admin, is a viewer: least privilege, still useful).
What each URL needs is declared once, in ``URL_ROLES``, and enforced by
``dashboard.middleware.RoleMiddleware`` before any view runs; a URL missing from the table is
admin-only, and a test fails until it is listed.
"""

from __future__ import annotations

from typing import Any

from destinations.kinds import kind_url_roles
from destinations.web.roles import ADMIN, OPERATOR, ROLES, VIEWER, UrlRoles

ROLE_LABELS = {
    VIEWER: "Viewer (read only)",
    OPERATOR: "Operator (merge, delete, rules, retries)",
    ADMIN: "Admin (API keys, destinations, webhooks, members)",
}
RANK = {role: rank for rank, role in enumerate(ROLES)}

# URLs anyone may call: SDKs, Refiner, health checks, the login page itself.
PUBLIC_PREFIXES = ("ingest-",)
PUBLIC = frozenset({"refiner-webhook", "healthz", "login", "logout"})

CORE_URL_ROLES: UrlRoles = {
    "home": (VIEWER, ADMIN),
    # Sources hold write keys: changing them is an admin's job.
    "source-list": (VIEWER, ADMIN),
    "source-new": (ADMIN, ADMIN),
    "source-detail": (VIEWER, ADMIN),
    "source-edit": (ADMIN, ADMIN),
    "source-rotate": (ADMIN, ADMIN),
    "source-debugger": (VIEWER, ADMIN),
    "event-list": (VIEWER, ADMIN),
    "event-detail": (VIEWER, ADMIN),
    "user-list": (VIEWER, ADMIN),
    "user-detail": (VIEWER, ADMIN),
    "account-list": (VIEWER, ADMIN),
    "account-detail": (VIEWER, ADMIN),
    # Audiences: everyone reads them; building, previewing and deleting is the operator's.
    "audience-list": (VIEWER, OPERATOR),
    "audience-new": (OPERATOR, OPERATOR),
    "audience-key": (OPERATOR, OPERATOR),
    "audience-preview": (OPERATOR, OPERATOR),
    "audience-detail": (VIEWER, OPERATOR),
    "audience-edit": (OPERATOR, OPERATOR),
    "audience-delete": (OPERATOR, OPERATOR),
    "computed-trait-list": (VIEWER, OPERATOR),
    "computed-trait-new": (OPERATOR, OPERATOR),
    "computed-trait-edit": (OPERATOR, OPERATOR),
    "computed-trait-delete": (OPERATOR, OPERATOR),
    # Destinations: settings and keys are the admin's; retrying and resuming the operator's.
    "destination-list": (VIEWER, ADMIN),
    "destination-new": (ADMIN, ADMIN),
    "destination-new-kind": (ADMIN, ADMIN),
    "destination-test-new": (ADMIN, ADMIN),
    "destination-delivery": (VIEWER, ADMIN),
    "destination-edit": (ADMIN, ADMIN),
    "destination-test": (ADMIN, ADMIN),
    # With the saved settings only (nothing typed can be tried): as harmless as a Retry.
    "destination-test-saved": (OPERATOR, OPERATOR),
    "destination-toggle": (ADMIN, ADMIN),
    "destination-resume": (OPERATOR, OPERATOR),
    "destination-retry-failed": (OPERATOR, OPERATOR),
    "delivery-retry": (OPERATOR, OPERATOR),
    # Replays: everyone sees them on the destination's page; previewing, starting, pausing,
    # resuming and cancelling one is the operator's, as retrying is.
    "destination-replay": (OPERATOR, OPERATOR),
    "destination-replay-preview": (OPERATOR, OPERATOR),
    "replay-pause": (OPERATOR, OPERATOR),
    "replay-resume": (OPERATOR, OPERATOR),
    "replay-cancel": (OPERATOR, OPERATOR),
    "job-detail": (VIEWER, OPERATOR),
    # Destination filters and the condition editor (also used by Kana rules): the operator's.
    "condition-row": (OPERATOR, OPERATOR),
    "destination-filters": (VIEWER, OPERATOR),
    "destination-filter-remove": (OPERATOR, OPERATOR),
    # User conflicts: resolving them is the operator's; the audit log is for everyone to read.
    "conflicts": (VIEWER, OPERATOR),
    "conflicts-export": (OPERATOR, OPERATOR),
    "conflicts-merge": (OPERATOR, OPERATOR),
    "conflicts-merge-preview": (OPERATOR, OPERATOR),
    "conflicts-merge-confirm": (OPERATOR, OPERATOR),
    "conflicts-merge-all": (OPERATOR, OPERATOR),
    "conflicts-job": (VIEWER, OPERATOR),
    "conflicts-import": (OPERATOR, OPERATOR),
    "conflicts-import-preview": (OPERATOR, OPERATOR),
    "conflicts-import-start": (OPERATOR, OPERATOR),
    "user-delete": (OPERATOR, OPERATOR),
    "audit-list": (VIEWER, ADMIN),
    "audit-detail": (VIEWER, ADMIN),
    "audit-undo": (OPERATOR, OPERATOR),
    "demo-remove": (ADMIN, ADMIN),
    "members": (ADMIN, ADMIN),
    "member-new": (ADMIN, ADMIN),
    "member-role": (ADMIN, ADMIN),
    "member-remove": (ADMIN, ADMIN),
    "destination-generate-secret": (ADMIN, ADMIN),
}
# Each kind declares its own pages' roles beside its URLs.
URL_ROLES: UrlRoles = {**CORE_URL_ROLES, **kind_url_roles()}


def role_of(user: Any) -> str | None:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    cached: str | None = getattr(user, "_switchboard_role", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = next((r for r in reversed(ROLES) if r in names), VIEWER)
        user._switchboard_role = cached
    return cached


def has_role(user: Any, needed: str) -> bool:
    role = role_of(user)
    return role is not None and RANK[role] >= RANK[needed]


def needed_role(url_name: str | None, method: str) -> str | None:
    """None for public URLs; otherwise the least role allowed (admin when unlisted)."""
    if url_name in PUBLIC or (url_name or "").startswith(PUBLIC_PREFIXES):
        return None
    read, write = URL_ROLES.get(url_name or "", (ADMIN, ADMIN))
    return read if method in ("GET", "HEAD", "OPTIONS") else write

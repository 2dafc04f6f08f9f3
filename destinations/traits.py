"""Read the profile fields Switchboard keeps out of identify traits."""

from __future__ import annotations

from typing import Any


def message_traits(payload: dict[str, Any]) -> dict[str, Any]:
    """The traits a message says about its subject.

    Segment's SDKs put identify traits at the top level; RudderStack's put them in
    ``context.traits``. For identify both are read, top-level keys winning. For group the
    top-level traits describe the account, and ``context.traits`` (the member) is not mixed in.
    """
    traits = payload.get("traits")
    own = traits if isinstance(traits, dict) else {}
    if payload.get("type") != "identify":
        return own
    context = payload.get("context")
    inner = context.get("traits") if isinstance(context, dict) else None
    if isinstance(inner, dict) and inner:
        return {**inner, **own}
    return own


# The profile columns' lengths. A trait longer than its column is kept whole in the traits,
# but cannot be the user's email or billing id (no real one is that long: it would be cut, or
# on insert refused by the database, failing the whole request) and a name is shortened.
EMAIL_CHARS = 320
NAME_CHARS = 255
BILLING_ID_CHARS = 255


def normalize_email(value: Any) -> str | None:
    """Emails compare case-insensitively in practice, so profiles keep them lower-cased."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    return email if email and len(email) <= EMAIL_CHARS else None


def trait_email(traits: dict[str, Any]) -> str | None:
    return normalize_email(traits.get("email"))


def trait_name(traits: dict[str, Any]) -> str | None:
    name = traits.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()[:NAME_CHARS]
    first, last = traits.get("firstName"), traits.get("lastName")
    parts = [p.strip() for p in (first, last) if isinstance(p, str) and p.strip()]
    return " ".join(parts)[:NAME_CHARS] or None


def trait_billing_id(traits: dict[str, Any]) -> str | None:
    """Kana documents ``billingUserId``; Segment's own example writes ``billingId``: take both."""
    for key in ("billingUserId", "billingId"):
        value = traits.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (str, int)) and str(value).strip():
            billing_id = str(value).strip()
            return billing_id if len(billing_id) <= BILLING_ID_CHARS else None
    return None

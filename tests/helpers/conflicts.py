"""User conflicts as tests make them (users sharing emails), the merge form, and what the
import says of a billing id that is no customer id."""

from __future__ import annotations

from typing import Any

from destinations.models import Profile
from tests.helpers.ingest import IngestPost, send

NOT_A_CUSTOMER = "is not a Stripe (cus_...) or Chargebee customer id"


def make_conflicts(post_ingest: IngestPost) -> None:
    send(
        post_ingest,
        [
            {"type": "identify", "userId": f"u{n}", "traits": {"email": email, **extra}}
            for n, (email, extra) in enumerate(
                [
                    ("dup@x.co", {}),
                    ("dup@x.co", {"billingId": "cus_1"}),
                    ("dup@x.co", {}),
                    ("pair@x.co", {"billingId": "cus_2"}),
                    ("pair@x.co", {"billingId": "cus_3"}),
                    ("alone@x.co", {}),
                ]
            )
        ],
    )


def merge_form(
    survivor: Profile, profiles: list[Profile], **choices: Profile | str | list[str]
) -> dict[str, Any]:
    """The merge form as the page posts it: everyone takes part, fields default to the
    survivor's value unless chosen."""
    data: dict[str, Any] = {
        "ids": ",".join(str(p.pk) for p in profiles),
        "survivor": str(survivor.pk),
        "include": [str(p.pk) for p in profiles],
    }
    for name in ("user_id", "email", "name", "billing_id"):
        data[f"keep_{name}"] = str(survivor.pk)
    for name, value in choices.items():
        data[name] = str(value.pk) if isinstance(value, Profile) else value
    return data

"""Which billing ids are valid: the customer ids Kana accepts (Stripe's ``cus_...`` or a
Chargebee id). Users whose billing id breaks the rule are listed as conflicts with the users who
have none; the same rule runs in SQL (``destinations.models.people``)."""

from __future__ import annotations

import re

# Stripe customer ids are "cus_" and an alphanumeric suffix. Chargebee customer ids are up to
# 50 letters and digits (generated ones look like "AzZTZgSs9sXh71Xo"); anything with other
# characters, such as an email or another Stripe object's id ("sub_..."), is neither.
STRIPE_CUSTOMER = re.compile(r"^cus_[A-Za-z0-9]+$")
CHARGEBEE_CUSTOMER = re.compile(r"^[A-Za-z0-9]{1,50}$")


def billing_id_problem(value: str | None) -> str | None:
    """None when ``value`` is absent or a customer id Kana accepts; otherwise the reason."""
    if not value:
        return None
    if STRIPE_CUSTOMER.match(value) or CHARGEBEE_CUSTOMER.match(value):
        return None
    return f"billing id {value!r} is not a Stripe (cus_...) or Chargebee customer id"

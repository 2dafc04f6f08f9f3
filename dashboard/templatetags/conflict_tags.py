"""The navigation's Conflicts link with its count, and the billing-id flag user pages show."""

from __future__ import annotations

from typing import Any

from django import template

from dashboard.forms.conflicts import FIELD_LABELS
from dashboard.selectors.conflicts import cached_conflict_counts
from destinations.identity.billing_ids import billing_id_problem

register = template.Library()


@register.inclusion_tag("includes/conflicts_nav.html", takes_context=True)
def conflicts_nav_link(context: template.Context) -> dict[str, Any]:
    """``{% conflicts_nav_link %}``: "Conflicts 12", counted at most every few seconds."""
    request = context.get("request")
    match = getattr(request, "resolver_match", None)
    area = (match.url_name if match else "") or ""
    counts = cached_conflict_counts()
    return {
        "duplicate_emails": counts["duplicate_emails"],
        "without_billing_id": counts["without_billing_id"],
        "total": counts["duplicate_emails"] + counts["without_billing_id"],
        "current": area.startswith("conflicts"),
    }


@register.filter
def billing_problem(value: str | None) -> str:
    """Why Kana would refuse this billing id ("" when it would not)."""
    return billing_id_problem(value) or ""


@register.filter
def field_label(name: str) -> str:
    """A choosable profile field's name as the merge page labels it."""
    return FIELD_LABELS.get(name, name)

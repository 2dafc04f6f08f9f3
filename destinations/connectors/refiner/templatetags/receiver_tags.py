"""The address Refiner posts a receiver's calls to, as the operator pastes it into Refiner."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from destinations.models import RefinerReceiver

register = template.Library()


@register.simple_tag(takes_context=True)
def receiver_url(context: dict[str, Any], receiver: RefinerReceiver) -> str:
    """Absolute, on the host the operator reached the dashboard by: Refiner must reach the same
    Switchboard (behind a proxy, that needs ALLOWED_HOSTS and the forwarded scheme set up)."""
    path = reverse("refiner-webhook", args=[receiver.public_id])
    return str(context["request"].build_absolute_uri(path))

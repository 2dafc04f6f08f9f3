"""What the engine announces, for others to act on without the engine knowing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after deliveries failed for good, outside the transaction that recorded them, with
# ``failures``: a list of (delivery, reason). System events turn them into "Delivery Failed"
# events for webhooks (``destinations.system_events``, connected in ``DestinationsConfig``).
deliveries_failed = Signal()

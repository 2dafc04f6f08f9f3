"""What ingest announces, for layers above it to act on without ingest knowing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after the transaction that stored events commits, with ``profile_ids``: the users those
# events are about (a set). Audiences re-evaluate them (``destinations.audiences.live``).
events_stored = Signal()

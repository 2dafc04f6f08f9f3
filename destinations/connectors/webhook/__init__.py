"""Webhooks: POST events (and Switchboard's own system events) to any URL, signed."""

KIND = "webhook"

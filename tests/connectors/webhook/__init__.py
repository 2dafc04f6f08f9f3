"""Outbound webhooks: signing, triggers, their dashboard pages, and the path end to end."""

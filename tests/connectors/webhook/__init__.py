"""Outbound webhooks: signing, delivery and the end-to-end path through a real worker."""

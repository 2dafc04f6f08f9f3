"""Refiner: the connector (identify, group as account, track, page as ping), its API client
and console, contact deletion, and the inbound webhooks (receivers) Refiner posts to."""

KIND = "refiner"

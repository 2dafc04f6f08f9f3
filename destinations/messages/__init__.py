"""The Segment message format: reading a request body within its limits, and validating each
message into what is stored (the same rules for the HTTP API, Refiner webhooks and system
events)."""

"""Webhooks in both directions: Refiner posting to us (receivers), and us posting to any URL
(the webhook connector lives with the other connectors)."""

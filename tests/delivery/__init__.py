"""The delivery engine: retries, faults, wake-ups, housekeeping, routing, private addresses."""

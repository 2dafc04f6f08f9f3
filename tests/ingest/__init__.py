"""Ingest: the Segment-compatible /v1 endpoints, what they accept, refuse and store."""

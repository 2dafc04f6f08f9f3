"""Identity resolution at ingest: which profile and account an event is about (anonymous ids,
email claims, billing ids), suppressions, and profiles written in bulk."""

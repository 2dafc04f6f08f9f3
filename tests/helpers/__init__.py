"""Helpers that are not fixtures: processes (web server, worker, broker), receivers, calls to
the stand-ins, seeded rows, and reading pages."""

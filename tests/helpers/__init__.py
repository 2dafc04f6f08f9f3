"""Helpers shared across test folders: processes (web server, worker, broker), receivers, flows."""

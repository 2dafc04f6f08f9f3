"""Replay: stored history sent to one destination again, as if it were live (ADR 27)."""

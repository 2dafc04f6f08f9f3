"""Shared by the property-based tests: a count of the requests they made and of any answer
>= 500, reported at the end of the run (the nightly profile's evidence)."""

from __future__ import annotations

from collections import Counter
from typing import Any

SENT: Counter[str] = Counter()


def record(response: Any, entry: str) -> None:
    """Every request a property test makes goes through here: none may answer >= 500, and
    every refusal must say why in its body."""
    SENT[entry] += 1
    status = response.status_code
    body = response.content if not getattr(response, "streaming", False) else b"streamed"
    assert status < 500, (entry, status, body[:500])
    # HEAD answers carry no body by definition (the status line still says what went wrong).
    if 400 <= status < 500 and response.request.get("REQUEST_METHOD") != "HEAD":
        assert body.strip(), (entry, status, "a 4xx with an empty body")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if SENT:
        total = sum(SENT.values())
        parts = ", ".join(f"{entry} {count:,}" for entry, count in sorted(SENT.items()))
        terminalreporter.write_line(f"hostile requests: {total:,} ({parts}); none answered 5xx")

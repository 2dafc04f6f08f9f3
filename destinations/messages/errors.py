from __future__ import annotations


class IngestError(Exception):
    """A whole request refused: the HTTP status and a message that names the problem."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

"""Reading dashboard pages as an operator reads them."""

from __future__ import annotations

import html
import re
from typing import Any

from django.http import StreamingHttpResponse


def text_of(response: Any) -> str:
    """The response body as a reader sees it: entities decoded."""
    return html.unescape(response.content.decode())


def words_of(response: Any) -> str:
    """The response's text without its tags, whitespace collapsed: what a sentence reads."""
    words = " ".join(re.sub(r"<[^>]+>", " ", text_of(response)).split())
    return re.sub(r" ([.,;:])", r"\1", words)


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def squashed(response: Any) -> str:
    """The page's text with tags removed and whitespace collapsed, as a reader sees it."""
    return " ".join(re.sub(r"<[^>]+>", " ", text_of(response)).split())


def streamed_text(response: Any) -> str:
    """The whole body of a streamed response (the CSV export), decoded."""
    assert isinstance(response, StreamingHttpResponse), response
    return response.getvalue().decode()

"""An audience's key: its name snake_cased, as Segment names computed traits downstream."""

from __future__ import annotations

import re
import unicodedata

MAX_KEY = 100


def snake_key(name: str) -> str:
    """``Power users (EU)`` -> ``power_users_eu``; accents are dropped (``Café`` -> ``cafe``).
    Empty when the name has no letter or digit to keep."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    # camelCase words are separated first: "trialUsers" -> "trial_users"
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", ascii_name)
    key = re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")
    return key[:MAX_KEY].rstrip("_")

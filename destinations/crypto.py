"""Encryption at rest for destination secrets (API keys, auth tokens).

Fernet (AES-128-CBC + HMAC-SHA256) keyed by SWITCHBOARD_ENCRYPTION_KEY. Several keys may be
given comma-separated: the first encrypts, all decrypt, so keys can be rotated.
"""

from __future__ import annotations

from functools import cache

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretsUnreadable(Exception):
    """Stored secrets cannot be decrypted with the configured key(s)."""


@cache
def _fernet(key_setting: str) -> MultiFernet:
    keys = [k.strip() for k in key_setting.split(",") if k.strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt_secrets(values: dict[str, str]) -> str:
    return _fernet(settings.ENCRYPTION_KEY).encrypt(orjson.dumps(values)).decode()


def decrypt_secrets(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        data = orjson.loads(_fernet(settings.ENCRYPTION_KEY).decrypt(token.encode()))
    except InvalidToken as exc:
        raise SecretsUnreadable(
            "Stored secrets cannot be decrypted: SWITCHBOARD_ENCRYPTION_KEY has changed"
        ) from exc
    return {str(k): str(v) for k, v in data.items()}


def mask(secret: str) -> str:
    """What the dashboard shows of a saved secret: never more than its last four characters."""
    if not secret:
        return ""
    return "•" * 8 + (secret[-4:] if len(secret) >= 12 else "")

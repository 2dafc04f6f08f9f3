"""Failed logins are counted per user name and address; too many lock that pair out for a while.

Counting the pair (not the address alone) keeps one noisy office from locking everyone out,
and not the name alone keeps an attacker from locking a real user out from elsewhere.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest


def client_address(request: HttpRequest) -> str:
    # Behind a proxy, REMOTE_ADDR is the proxy; SWITCHBOARD_BEHIND_HTTPS_PROXY trusts its header.
    # The last address is the one the proxy added; earlier ones are whatever the client sent.
    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip()
    return str(request.META.get("REMOTE_ADDR", ""))


def throttle_key(username: str, request: HttpRequest | None) -> str:
    address = client_address(request) if request is not None else ""
    digest = hashlib.sha256(f"{username.strip().lower()}|{address}".encode()).hexdigest()[:32]
    return f"login-failures:{digest}"


class ThrottledLoginForm(AuthenticationForm):
    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        key = throttle_key(username, self.request)
        failures = cache.get(key, 0)
        if failures >= settings.LOGIN_MAX_FAILURES:
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            raise ValidationError(
                f"Too many failed logins for this account from your address. "
                f"Try again in {minutes} minutes.",
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            cache.set(key, failures + 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)
            raise
        cache.delete(key)
        return cleaned

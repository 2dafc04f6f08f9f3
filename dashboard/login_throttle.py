"""Failed logins are counted per user name and address; too many lock that pair out for a while.

Counting the pair (not the address alone) keeps one noisy office from locking everyone out,
and not the name alone keeps an attacker from locking a real user out from elsewhere.

An attempt is counted before its password is checked, in one atomic step on counters that every
process shares (``destinations.counters``): however many attempts arrive at once, on however many
web processes, at most ``LOGIN_MAX_FAILURES`` passwords are checked per pair until the wait
(``LOGIN_LOCKOUT_SECONDS`` from the first failure) is over. A successful login clears the count.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from destinations.counters import add_to_counters, forget_counter


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
        username = self.cleaned_data.get("username")
        if not (username and self.cleaned_data.get("password")):
            return super().clean()  # no password is checked: the form shows what is missing
        key = throttle_key(username, self.request)
        attempt = add_to_counters({key: 1}, ttl_seconds=settings.LOGIN_LOCKOUT_SECONDS)[key]
        if attempt > settings.LOGIN_MAX_FAILURES:
            minutes = max(1, settings.LOGIN_LOCKOUT_SECONDS // 60)
            raise ValidationError(
                f"Too many failed logins for this account from your address. "
                f"Try again in {minutes} minutes.",
                code="throttled",
            )
        cleaned = super().clean()  # a wrong password raises, and the attempt stays counted
        forget_counter(key)
        return cleaned

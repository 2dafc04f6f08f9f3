"""What every destination kind declares, after Segment's action-destinations: its settings
(which are secret), the calls it accepts, a pure ``translate`` from a stored event to HTTP
requests (or a reason to skip), how to read a response, and how to test a connection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

TRANSIENT_STATUSES = frozenset({408, 423, 429}) | frozenset(range(500, 600))
EXCERPT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class SettingField:
    name: str
    label: str
    secret: bool = False
    default: str = ""
    required: bool = True
    help: str = ""
    choices: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    method: str
    url: str
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # The subject of the call (a user id or email): per-user rate limits, and a subject's
    # deliveries are sent one after another, in the order they were received.
    subject: str | None = None
    # Raw bytes to send instead of ``json`` when the body must be exactly what was signed.
    body: bytes | None = None
    # Sent instead when the answer says so (``Verdict.use_fallback``), e.g. create a user the
    # service does not know yet, then record the usage again.
    fallback: tuple[OutboundRequest, ...] = ()


@dataclass(frozen=True, slots=True)
class Skip:
    """The event is not sent, for a reason the operator can read on the delivery. ``failed``
    marks what is the sender's fault (e.g. a malformed amount) rather than a choice."""

    reason: str
    failed: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What ``translate`` may use besides the event: the destination's settings (secrets
    included), what routing decided for this delivery, and which attempt this is."""

    config: Mapping[str, str]
    plan: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Verdict:
    delivered: bool
    permanent: bool = False
    reason: str = ""
    retry_after: float | None = None
    use_fallback: bool = False

    @classmethod
    def ok(cls) -> Verdict:
        return cls(delivered=True)

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None) -> Verdict:
        return cls(delivered=False, reason=reason, retry_after=retry_after)

    @classmethod
    def fail(cls, reason: str) -> Verdict:
        return cls(delivered=False, permanent=True, reason=reason)


class ConnectionFailed(Exception):
    """Test connection did not succeed. The message is shown to the operator as it is; the
    detail (the library's own text, e.g. urllib3's) is kept behind a toggle for whoever needs
    to dig further."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    @classmethod
    def unreachable(cls, url: str, exc: requests.RequestException) -> ConnectionFailed:
        """No answer came: say why in words, with urllib3's text as the detail."""
        from destinations.delivery.http import why_unreachable

        return cls(f"Could not reach {url}: {why_unreachable(exc, url)}", detail=str(exc))


class Connector:
    kind: ClassVar[str]
    display_name: ClassVar[str]  # the key in a message's integrations object
    accepts: ClassVar[frozenset[str]]
    settings_fields: ClassVar[tuple[SettingField, ...]]
    requests_per_minute: ClassVar[int] = 0  # 0: no limit
    test_label: ClassVar[str] = "Test connection"
    subject_requests_per_minute: ClassVar[int] = 0
    # How the reasons of failed Skips (``Skip(failed=True)``: the event's own content is wrong)
    # begin. The same event fails the same way again, so no Retry is offered for them.
    event_fault_prefixes: ClassVar[tuple[str, ...]] = ()

    def route_context(self, destination: Any) -> Any:
        """Read once per routing-cache refresh (database reads allowed), handed to ``plan``."""
        return None

    def plan(
        self, payload: Mapping[str, Any], route_context: Any
    ) -> Mapping[str, Any] | Skip | None:
        """Decide at ingest, inside its transaction, what this delivery will be: data kept on
        the row for ``translate``, a Skip recorded at once without waking a worker, or None
        when the event is not for this destination at all (no row is made)."""
        return {}

    def translate(
        self, payload: Mapping[str, Any], context: DeliveryContext
    ) -> list[OutboundRequest] | Skip:
        """Pure: no I/O. The requests to send, in order, or why nothing is sent."""
        raise NotImplementedError

    def classify(self, response: requests.Response, request: OutboundRequest) -> Verdict:
        return classify_http(response, self.display_name)

    def test_connection(self, config: Mapping[str, str], session: requests.Session) -> str:
        raise NotImplementedError

    def check_config(self, config: Mapping[str, str]) -> None:
        """Raise ValueError naming a setting that cannot work; called before saving."""
        for setting in self.settings_fields:
            value = config.get(setting.name)
            if value and setting.choices and value not in {c for c, _ in setting.choices}:
                allowed = ", ".join(c or "(blank)" for c, _ in setting.choices)
                raise ValueError(f"{setting.label} must be one of {allowed}, got {value!r}")

    @classmethod
    def secret_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in cls.settings_fields if f.secret)


def connection_test_timeout(longest: float = 10.0) -> float:
    """Seconds a Test connection waits for an answer: the delivery timeout, at most
    ``longest`` (the operator is watching)."""
    from django.conf import settings

    return min(longest, float(settings.DELIVERY_TIMEOUT_SECONDS))


def classify_http(response: requests.Response, service: str) -> Verdict:
    """Segment's rules: 2xx delivered; timeouts, 408, 423, 429 and 5xx retried; other
    statuses (3xx included: a redirect is not followed with the body) fail at once."""
    status = response.status_code
    if 200 <= status < 300:
        return Verdict.ok()
    reason = f"HTTP {status} from {service}: {error_text(response)}"
    if status in TRANSIENT_STATUSES:
        return Verdict.retry(reason, retry_after_seconds(response.headers.get("Retry-After")))
    return Verdict.fail(reason)


def error_text(response: requests.Response) -> str:
    """The service's own words for an error, short enough to group failures by."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value[:200]
    text = response.text.strip()
    return text[:200] if text else (response.reason or "no body")


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    from django.utils import timezone

    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - timezone.now()).total_seconds())


def subject_of(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(userId, email) of the person a message is about; email from traits or context.traits."""
    user_id = payload.get("userId") or None
    email: Any = None
    for container in (payload.get("traits"), (payload.get("context") or {}).get("traits")):
        if isinstance(container, dict) and isinstance(container.get("email"), str):
            email = container["email"].strip() or None
            if email:
                break
    return (str(user_id) if user_id else None), email

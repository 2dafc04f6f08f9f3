"""A webhook receiver on loopback, as an operator's own endpoint would be: it checks
``Authorization: Bearer <token>`` and the Standard Webhooks signature (with the
``standardwebhooks`` package, not Switchboard's code) and keeps the bodies it verified.

    with WebhookReceiver(token="tok", secret=new_signing_secret()) as receiver:
        receiver.fail(500, times=1)  # the first call gets 500, the next ones are checked
        ...  # deliver something to receiver.url
        [event] = receiver.wait_for_verified(1)
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from destinations.standins.http import FakeHttpServer, Fault, Handler, RecordedRequest, read_body


class WebhookReceiver(FakeHttpServer[RecordedRequest]):
    service = "webhook receiver"

    def __init__(
        self, *, token: str | None = None, secret: str | None = None, path: str = "/hook"
    ) -> None:
        super().__init__()
        self.token = token
        self.secret = secret
        self.path = path
        self._verified: list[Any] = []

    @property
    def url(self) -> str:
        return self.origin + self.path

    @property
    def verified(self) -> list[Any]:
        with self._lock:
            return list(self._verified)

    def fail(self, status: int = 500, *, times: int | None = 1) -> Fault:
        """Answer ``status`` to the next ``times`` calls, whatever they carry."""
        return self._add_fault(Fault("status", None, times, status, {"error": "receiver down"}))

    def wait_for_verified(self, count: int, timeout: float = 10.0) -> list[Any]:
        """The first ``count`` bodies that passed both checks, once that many arrived."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._verified) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n  ".join(r.summary() for r in self._received) or "(nothing)"
                    raise AssertionError(
                        f"{self.service}: wanted {count} verified calls within {timeout}s, "
                        f"received:\n  {seen}"
                    )
                self._arrived.wait(left)
            return list(self._verified[:count])

    def _serve(self, handler: Handler) -> None:
        split = urlsplit(handler.path)
        raw = read_body(handler)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = RecordedRequest(
            method=handler.command,
            path=split.path,
            headers=dict(handler.headers.items()),
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            body=body,
            raw_body=raw,
            received_at=time.time(),
        )
        fault = self._arrive(record, None)
        if self._fault_answered(handler, record, fault):
            return
        status, answer = self._check(record)
        self._reply(handler, record, status, answer, {})

    def _check(self, record: RecordedRequest) -> tuple[int, dict[str, Any]]:
        if record.path != self.path:
            return 404, {"error": f"nothing at {record.path}"}
        if self.token is not None and record.header("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "wrong or missing bearer token"}
        if self.secret is not None:
            try:
                payload = Webhook(self.secret).verify(record.raw_body, record.headers)
            except WebhookVerificationError as exc:
                return 401, {"error": f"signature not verified: {exc}"}
        else:
            payload = record.body
        with self._arrived:
            self._verified.append(payload)
        return 200, {"ok": True}


def serve_webhook_receiver(**options: Any) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(**options) as receiver:
        yield receiver

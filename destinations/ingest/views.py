"""The Segment HTTP Tracking API: ``/v1/<call>`` and ``/v1/batch``.

Order of checks: content type and size (cheap), header write key and rate limit, then the body.
A 200 is sent only after the transaction storing the events has committed.

A request is answered in two steps: ``prepare`` reads, authenticates and validates it and writes
nothing; what it accepted (or refused, to be listed) is a ``Deferred`` write, stored by the
process's writer, after which ``finish`` makes the answer. The view below does both on its
thread; the web server's event loop does the first and lets the writer's completion do the
second, so no thread waits (docs/decisions/0029-ingest-path.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.contrib.auth.decorators import login_not_required
from django.db import IntegrityError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from destinations.ingest.auth import (
    SourceRef,
    forget_cached_sources,
    source_for_write_key,
    write_key_from_body,
    write_key_from_header,
)
from destinations.ingest.group_commit import (
    PendingWrite,
    WriterTimeout,
    expecting_write,
    store_accepted,
    withdraw_refusals,
)
from destinations.ingest.ratelimit import check_rate_limit
from destinations.ingest.store import RefusedMessage, StoreResult
from destinations.messages import body
from destinations.messages.errors import IngestError
from destinations.messages.message import (
    Envelope,
    InvalidMessage,
    Message,
    validate_message,
    without_reserved,
)
from destinations.models import Source

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 2000
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}


HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def json_response(
    status: int, data: dict[str, Any], headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(orjson.dumps(data), status=status, content_type="application/json")
    for name, value in {**CORS_HEADERS, **(headers or {})}.items():
        response[name] = value
    return response


ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> HttpResponse:
    """An error body every SDK can read: Segment's clients show ``error``; RudderStack's read
    ``code`` and ``message`` and fail with a KeyError (retried as if the network failed) when
    they are missing."""
    body = {
        "success": False,
        "error": message,
        "code": ERROR_CODES.get(status, "error"),
        "message": message,
        **extra,
    }
    return json_response(status, body, headers)


def excerpt(value: Any) -> str:
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    else:
        try:
            text = orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            # Too deep for the encoder (the refusal's reason, usually): show the shallow part.
            text = orjson.dumps(body.pruned(value, body.MAX_JSON_DEPTH)).decode()
    # PostgreSQL text cannot hold NUL; the excerpt is for reading, so a replacement mark will do.
    return text[:EXCERPT_CHARS].replace("\x00", "\ufffd")


@dataclass(frozen=True, slots=True)
class Deferred:
    """A request's write (its accepted messages, or only its refused items to be listed) and
    how to answer it once the write is done."""

    write: PendingWrite
    endpoint: str
    answer: Callable[[StoreResult], HttpResponse]
    # A refusal is answered with its 4xx whether or not listing it worked: the sender's input is
    # wrong either way, and a retry would not change that.
    refusal: bool = False


NOTHING_STORED = StoreResult(stored=0, duplicates=0)


@csrf_exempt
@login_not_required
def ingest(request: HttpRequest, call_type: str | None = None) -> HttpResponse:
    if request.method != "POST":
        return other_method(request)
    with expecting_write():
        outcome = prepare(request, call_type)
        if isinstance(outcome, HttpResponse):
            return outcome
        try:
            result = store_accepted(outcome.write)
        except Exception as error:
            return finish(outcome, None, error)
        return finish(outcome, result, None)


def prepare(request: HttpRequest, call_type: str | None) -> HttpResponse | Deferred:
    """The answer to a request that needs no write, or the write it needs: nothing here writes
    to the database."""
    if request.method != "POST":
        return other_method(request)
    return receive(request, call_type)


def other_method(request: HttpRequest) -> HttpResponse:
    if request.method == "OPTIONS":
        return _preflight(request.META.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", ""))
    return error_response(405, "Use POST", {"Allow": "POST, OPTIONS"})


def finish(
    deferred: Deferred, result: StoreResult | None, error: BaseException | None
) -> HttpResponse:
    """The answer to a deferred request once its write has committed (``result``) or failed
    (``error``, raised again when no answer fits it: the caller answers 500)."""
    if error is None:
        assert result is not None
        return deferred.answer(result)
    if deferred.refusal:
        logger.warning("ingest could not list a refusal (%s): %s", deferred.endpoint, error)
        return deferred.answer(NOTHING_STORED)
    if isinstance(error, IntegrityError):
        # The source was deleted while this process still had its write key cached: its
        # events break the foreign key. Forget it and answer as for any unknown key.
        if not Source.objects.filter(id=deferred.write.source_id).exists():
            forget_cached_sources()
            return error_response(401, "Unknown write key")
        raise error
    if isinstance(error, (WriterTimeout, OperationalError, InterfaceError)):
        # The database is unreachable or too slow: nothing was acknowledged, and the SDK's
        # retry (same messageIds) cannot store anything twice.
        logger.warning("ingest could not store (%s): %s", deferred.endpoint, error)
        if isinstance(error, WriterTimeout):
            withdraw_refusals(deferred.write)  # the retry lists them
        return unavailable()
    raise error


def unavailable() -> HttpResponse:
    """Nothing was acknowledged, and the SDK's retry (same messageIds) cannot store anything
    twice."""
    return error_response(503, "Events could not be stored just now; retry", {"Retry-After": "5"})


def refusal(
    source: SourceRef,
    refused: list[RefusedMessage],
    *,
    endpoint: str,
    received_at: datetime,
    response: HttpResponse,
) -> Deferred:
    """Refused input to be listed on the source's page, answered with ``response``."""
    write = PendingWrite(
        source_id=source.id,
        messages=[],
        received_at=received_at,
        demo=source.demo,
        refused=refused,
        endpoint=endpoint,
    )
    return Deferred(write=write, endpoint=endpoint, answer=lambda _: response, refusal=True)


def receive(request: HttpRequest, call_type: str | None) -> HttpResponse | Deferred:
    """A POST to an ingest endpoint: read, authenticate and validate it."""
    endpoint = call_type or "batch"
    source: SourceRef | None = None
    raw = b""
    try:
        body.check_content_type(request.content_type or "")
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > body.MAX_BATCH_BYTES:
            raise IngestError(
                413, f"Body is {length:,} bytes; the limit is {body.MAX_BATCH_BYTES // 1024} KB"
            )
        header_key = write_key_from_header(request.META.get("HTTP_AUTHORIZATION", ""))
        if header_key:
            source = source_for_write_key(header_key)
            check_rate_limit(source)
        raw = request.read(body.MAX_BATCH_BYTES + 1)
        if len(raw) > body.MAX_BATCH_BYTES:
            raise IngestError(413, f"Body is over the {body.MAX_BATCH_BYTES // 1024} KB limit")
        data = body.decompress(
            raw, request.META.get("HTTP_CONTENT_ENCODING", ""), body.MAX_BATCH_BYTES
        )
        if source is None:
            # Without a header the key can only be in the body: parse first, then authenticate.
            document = body.parse_json(data)
            source = source_for_write_key(write_key_from_body(document))
            check_rate_limit(source)
        else:
            document = body.parse_json(data)
        if call_type is None:
            return accept_batch(source, document, raw=data)
        return accept_single(source, call_type, document, raw=data)
    except (OperationalError, InterfaceError) as error:
        # The write key could not be looked up: the database is unreachable.
        logger.warning("ingest could not authenticate (%s): %s", endpoint, error)
        return unavailable()
    except IngestError as error:
        logger.info("ingest refused (%s %s): %s", endpoint, error.status, error.message)
        response = error_response(error.status, error.message, error.headers)
        if source is None or error.status == 429:
            return response
        return refusal(
            source,
            [RefusedMessage(index=None, reason=error.message, excerpt=excerpt(raw))],
            endpoint=endpoint,
            received_at=timezone.now(),
            response=response,
        )


def _preflight(requested_headers: str) -> HttpResponse:
    """Browser SDKs add headers of their own (analytics.js ``X-Retry-Count``, RudderStack's
    ``AnonymousId``): every header asked for is allowed. No cookies are involved, so allowing
    them grants nothing that a page could not send anyway."""
    response = HttpResponse(status=204)
    for name, value in CORS_HEADERS.items():
        response[name] = value
    asked = [h.strip() for h in requested_headers.split(",") if HEADER_NAME.match(h.strip())]
    if asked:
        known = [h.strip() for h in CORS_HEADERS["Access-Control-Allow-Headers"].split(",")]
        extra = [h for h in asked if h.lower() not in {k.lower() for k in known}]
        response["Access-Control-Allow-Headers"] = ", ".join(known + extra)
    return response


def accept_single(
    source: SourceRef, call_type: str, document: dict[str, Any], *, raw: bytes
) -> Deferred:
    received_at = timezone.now()
    try:
        message = validate_message(
            without_reserved(document), call_type=call_type, received_at=received_at
        )
    except InvalidMessage as invalid:
        reason = str(invalid)
        return refusal(
            source,
            [RefusedMessage(index=None, reason=reason, excerpt=excerpt(raw))],
            endpoint=call_type,
            received_at=received_at,
            response=error_response(400, reason),
        )
    write = PendingWrite(
        source_id=source.id, messages=[message], received_at=received_at, demo=source.demo
    )
    return Deferred(write=write, endpoint=call_type, answer=single_answer)


def single_answer(result: StoreResult) -> HttpResponse:
    return json_response(200, {"success": True, **result_counts(result)})


def result_counts(result: StoreResult) -> dict[str, int]:
    counts = {"stored": result.stored, "duplicates": result.duplicates}
    if result.suppressed:
        counts["suppressed"] = result.suppressed
    return counts


def accept_batch(source: SourceRef, document: dict[str, Any], *, raw: bytes) -> Deferred:
    items = document.get("batch")
    if not isinstance(items, list):
        reason = (
            "batch is missing"
            if items is None
            else f"batch must be an array, got {body.type_name(items)}"
        )
        raise IngestError(400, reason)
    if not items:
        raise IngestError(400, "batch is empty")
    if len(items) > body.MAX_BATCH_EVENTS:
        raise IngestError(
            413, f"batch has {len(items):,} events; the limit is {body.MAX_BATCH_EVENTS:,}"
        )
    envelope = Envelope.of(
        without_reserved(
            {k: document[k] for k in ("context", "integrations", "sentAt") if k in document}
        )
    )
    received_at = timezone.now()
    accepted: list[Message] = []
    refused: list[RefusedMessage] = []
    for index, item in enumerate(items):
        try:
            accepted.append(
                validate_message(
                    without_reserved(item),
                    call_type=None,
                    received_at=received_at,
                    envelope=envelope,
                )
            )
        except InvalidMessage as invalid:
            refused.append(RefusedMessage(index=index, reason=str(invalid), excerpt=excerpt(item)))
    failed = [{"index": r.index, "reason": r.reason} for r in refused]
    if not accepted:
        return refusal(
            source,
            refused,
            endpoint="batch",
            received_at=received_at,
            response=error_response(400, "no valid messages in batch", failed=failed),
        )
    write = PendingWrite(
        source_id=source.id,
        messages=accepted,
        received_at=received_at,
        demo=source.demo,
        refused=refused,
        endpoint="batch",
    )

    def answer(result: StoreResult) -> HttpResponse:
        counts = {"accepted": len(accepted), **result_counts(result), "failed": failed}
        return json_response(200, {"success": True, **counts})

    return Deferred(write=write, endpoint="batch", answer=answer)

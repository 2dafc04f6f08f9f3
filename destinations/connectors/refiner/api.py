"""Reading Refiner's data through its API, and the operator's API console.

Everything is relative to the destination's Base URL and authorised with its API Key. The
console cannot leave the Base URL: a path with a scheme, a host, ``//`` or ``..`` is refused
before any request is made, and the final URL is checked to still start with the Base URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import requests
from django.contrib.auth.models import User

from destinations.connectors.refiner.connector import auth_headers, base_url
from destinations.delivery.contract import error_text
from destinations.delivery.http import session, why_unreachable
from destinations.models import AuditAction, AuditEntry, Destination

ORDER_BY = ("first_seen_at", "last_seen_at", "last_form_submission_at")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
TIMEOUT = 15


class RefinerApiError(Exception):
    """What Refiner (or the network) said, in words for the operator."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None
    total: int | None


def get(destination: Destination, path: str, params: Mapping[str, Any]) -> Any:
    config = destination.config()
    query = {k: v for k, v in params.items() if v not in (None, "")}
    try:
        response = session().get(
            base_url(config) + path, params=query, headers=auth_headers(config), timeout=TIMEOUT
        )
    except requests.RequestException as exc:
        reason = why_unreachable(exc, base_url(config))
        raise RefinerApiError(f"Could not reach Refiner: {reason}") from exc
    if response.status_code != 200:
        raise RefinerApiError(
            f"Refiner answered HTTP {response.status_code}: {error_text(response)}"
        )
    try:
        return response.json()
    except ValueError as exc:
        raise RefinerApiError(f"Refiner did not answer JSON: {response.text[:200]}") from exc


def page_of(data: Any) -> Page:
    items = data.get("items") if isinstance(data, dict) else None
    pagination = (data.get("pagination") if isinstance(data, dict) else None) or {}
    return Page(
        items=[i for i in items or [] if isinstance(i, dict)],
        next_cursor=pagination.get("next_page_cursor") or None,
        total=pagination.get("items_count"),
    )


def contacts(
    destination: Destination,
    *,
    order_by: str = "first_seen_at",
    form_uuid: str = "",
    segment_uuid: str = "",
    limit: int = 50,
    cursor: str = "",
    search: str = "",
) -> Page:
    if order_by not in ORDER_BY:
        raise RefinerApiError(f"Order by must be one of {', '.join(ORDER_BY)}")
    if not 1 <= limit <= 1000:
        raise RefinerApiError("Limit must be between 1 and 1000")
    params = {
        "order_by": order_by,
        "form_uuid": form_uuid,
        "segment_uuid": segment_uuid,
        "page_length": limit,
        "page_cursor": cursor,
        "search": search,
    }
    return page_of(get(destination, "/contacts", params))


def contact(destination: Destination, *, uuid: str = "", id: str = "", email: str = "") -> Any:
    return get(destination, "/contact", {"uuid": uuid, "id": id, "email": email})


def segments(destination: Destination, *, page: int = 1) -> Page:
    return page_of(get(destination, "/segments", {"page": page, "page_length": 100}))


def forms(destination: Destination, *, which: str = "all", page: int = 1) -> Page:
    return page_of(get(destination, "/forms", {"list": which, "page": page, "page_length": 100}))


def responses(
    destination: Destination,
    *,
    form_uuid: str = "",
    segment_uuid: str = "",
    limit: int = 50,
    cursor: str = "",
) -> Page:
    params = {
        "form_uuid": form_uuid,
        "segment_uuid": segment_uuid,
        "page_length": limit,
        "page_cursor": cursor,
    }
    return page_of(get(destination, "/responses", params))


@dataclass(frozen=True)
class ConsoleResult:
    method: str
    url: str
    status: int
    headers: dict[str, str]
    body: str  # pretty-printed when JSON
    elapsed_ms: int


def confined_url(destination: Destination, path: str, query: str) -> str:
    """The console's URL: ``path`` relative to the Base URL, never anywhere else."""
    base = base_url(destination.config())
    relative = path.strip()
    parts = urlsplit(relative)
    if parts.scheme or parts.netloc or relative.startswith("//"):
        raise RefinerApiError("URL must be relative to the Refiner API, e.g. /contacts")
    segments = [s for s in parts.path.split("/") if s]
    # Checked decoded too: a proxy that decodes %2e%2e would otherwise climb out of the API.
    decoded = [unquote(s) for s in segments]
    if any(s in ("..", ".") or "\\" in s or "/" in s for s in decoded):
        raise RefinerApiError("URL must not contain . or .. segments (encoded or not)")
    url = base + "/" + "/".join(segments)
    pairs = parse_qsl(parts.query, keep_blank_values=True) + parse_qsl(
        query.strip().lstrip("?"), keep_blank_values=True
    )
    if pairs:
        url += "?" + urlencode(pairs)
    if not url.startswith(base + "/") and url != base + "/":
        raise RefinerApiError("URL must stay within the Refiner API's Base URL")
    return url


def parse_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise RefinerApiError(f"Headers line {number} must look like Name: value")
        if name.strip().lower() in ("authorization", "host"):
            raise RefinerApiError(f"{name.strip()} is set by Switchboard")
        headers[name.strip()] = value.strip()
    return headers


def console_call(
    destination: Destination,
    *,
    method: str,
    path: str,
    query: str = "",
    headers: str = "",
    body: str = "",
    actor: User | None = None,
) -> ConsoleResult:
    """Make an API call as the operator typed it, authorised, and write it to the audit log
    (method, path and status: never the key, never the body)."""
    method = method.upper()
    if method not in METHODS:
        raise RefinerApiError(f"Method must be one of {', '.join(METHODS)}")
    url = confined_url(destination, path, query)
    extra = parse_headers(headers)
    data: bytes | None = None
    if body.strip():
        try:
            json.loads(body)
        except ValueError as exc:
            raise RefinerApiError(f"Body is not valid JSON: {exc}") from exc
        data = body.encode()
        extra.setdefault("Content-Type", "application/json")
    config = destination.config()
    try:
        response = session().request(
            method,
            url,
            data=data,
            headers={**extra, **auth_headers(config)},
            timeout=TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        raise RefinerApiError(f"Could not reach Refiner: {why_unreachable(exc, url)}") from exc
    shown = urlsplit(url)
    # Parameter names only: their values may be people's emails or ids.
    names = sorted({name for name, _ in parse_qsl(shown.query, keep_blank_values=True)})
    asked = f"{shown.path}" + (f" (parameters: {', '.join(names)})" if names else "")
    AuditEntry.objects.create(
        actor=actor,
        action=AuditAction.REFINER_API_CALL,
        summary=f"{method} {asked} on {destination.name}: HTTP {response.status_code}",
        data={
            "destination": destination.pk,
            "method": method,
            "path": shown.path,
            "parameters": names,
            "status": response.status_code,
        },
    )
    try:
        pretty = json.dumps(response.json(), indent=2, ensure_ascii=False)
    except ValueError:
        pretty = response.text
    return ConsoleResult(
        method=method,
        url=url,
        status=response.status_code,
        headers={k: v for k, v in response.headers.items() if k.lower() != "set-cookie"},
        body=pretty[:200_000],
        elapsed_ms=int(response.elapsed.total_seconds() * 1000),
    )

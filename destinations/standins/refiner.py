"""A fake Refiner REST API: a real HTTP server on loopback that tests point a destination at.

It stands in for ``https://api.refiner.io/v1`` (see shared/reference/refiner-api.md): same
paths under ``/v1``, same auth rules and error bodies, payload validation, a contacts store,
seedable segments, forms and responses with page and cursor pagination, and faults a test can
switch on at runtime (5xx, slow answers, dropped or refused connections, 429, bad key).

    with FakeRefiner(api_keys={"rk_test"}) as refiner:
        destination_settings = {"base_url": refiner.base_url, "api_key": "rk_test"}
        refiner.server_error(times=1, path="/identify-user")
        ...  # deliver something
        [first, retry] = refiner.wait_for(2, path="/identify-user")
        assert retry.status == 200 and refiner.contact(id="user-1") is not None

Where Refiner's behaviour is not documented (marked "unverified" in the reference) the fake
makes one plain choice and says so in a comment.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
import uuid as uuidlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import requests

from destinations.standins.http import (
    ApiError,
    FakeHttpServer,
    Fault,
    Handler,
    RecordedRequest,
    read_body,
)

DEFAULT_API_KEY = "rk_test"
API_PREFIX = "/v1"
DEFAULT_PAGE_LENGTH = 50  # unverified: Refiner's default page length is not documented
MAX_PAGE_LENGTH = 1000
RATE_WINDOW_SECONDS = 60.0

MISSING_KEY = {"error": "No API key found in headers"}
MALFORMED_KEY = {"error": "Malformed API key"}  # the live API answers 401; its text is unknown
UNKNOWN_KEY = {"message": "API key not valid or does not exist"}

Params = dict[str, Any]
SortKey = tuple[bool, float, int]


# --- what the fake stores -------------------------------------------------------------------


@dataclass
class Account:
    uuid: str
    remote_id: str
    display_name: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def domain(self) -> str | None:
        value = self.attributes.get("domain")
        return str(value) if value else None


@dataclass
class Contact:
    uuid: str
    remote_id: str | None
    email: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    attributes: dict[str, Any] = field(default_factory=dict)
    segment_uuids: list[str] = field(default_factory=list)
    account_uuid: str | None = None
    seq: int = 0  # insertion order: breaks ties between equal timestamps in listings

    @property
    def display_name(self) -> str | None:
        name = self.attributes.get("name")
        if not name:
            parts = [self.attributes.get("first_name"), self.attributes.get("last_name")]
            name = " ".join(str(p) for p in parts if p)
        return str(name) if name else None


@dataclass
class Segment:
    uuid: str
    name: str
    is_manual: bool
    created_at: datetime
    seq: int = 0


@dataclass
class Form:
    uuid: str
    name: str
    status: Literal["published", "draft", "archived"]
    created_at: datetime
    seq: int = 0


@dataclass
class FormResponse:
    uuid: str
    form_uuid: str
    contact_uuid: str
    data: dict[str, Any]
    created_at: datetime
    completed_at: datetime | None  # None: a partial response
    seq: int = 0


def invalid(field_name: str, message: str) -> ApiError:
    # Refiner runs on Laravel; its validation errors have this shape.
    return ApiError(422, {"message": message, "errors": {field_name: [message]}})


def not_found(what: str) -> ApiError:
    return ApiError(404, {"message": f"{what} not found"})


# --- the server -----------------------------------------------------------------------------


class FakeRefiner(FakeHttpServer[RecordedRequest]):
    """A Refiner API on ``http://127.0.0.1:<port>/v1``; start it with ``with`` or start()."""

    service = "Refiner"

    def __init__(
        self,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        *,
        project_name: str = "Switchboard tests",
        project_uuid: str | None = None,
        host: str = "127.0.0.1",
        rate_limit_per_key: int = 4000,
        rate_limit_per_user: int = 100,
        reject_nested_traits: bool = True,
    ) -> None:
        super().__init__(host=host)
        self.api_keys: set[str] = set(api_keys)  # may be changed at runtime to revoke a key
        self.project_name = project_name
        self.project_uuid = project_uuid or str(uuidlib.uuid4())
        self.rate_limit_per_key = rate_limit_per_key
        self.rate_limit_per_user = rate_limit_per_user
        # Refiner stores flat traits (strings, numbers, dates). Refusing objects and lists makes
        # a connector that forgets to flatten fail loudly instead of losing data silently.
        self.reject_nested_traits = reject_nested_traits
        self._hits: dict[tuple[str, ...], deque[float]] = {}
        self._seq = 0
        self._contacts: dict[str, Contact] = {}
        self._accounts: dict[str, Account] = {}
        self._segments: dict[str, Segment] = {}
        self._forms: dict[str, Form] = {}
        self._responses: dict[str, FormResponse] = {}

    @property
    def base_url(self) -> str:
        return self.origin + API_PREFIX

    def url(self, path: str = "/") -> str:
        return self.base_url + _endpoint(path)

    # --- faults ---

    def server_error(
        self, *, status: int = 500, times: int | None = None, path: str | None = None
    ) -> Fault:
        return self._add_fault(Fault("status", path, times, status, {"message": "Server Error"}))

    def rate_limit(
        self, retry_after: int = 30, *, times: int | None = None, path: str | None = None
    ) -> Fault:
        body, headers = {"message": "Too Many Attempts."}, {"Retry-After": str(retry_after)}
        return self._add_fault(Fault("status", path, times, 429, body, headers))

    def reject_key(
        self, status: Literal[401, 404] = 404, *, times: int | None = None, path: str | None = None
    ) -> Fault:
        """Answer as Refiner does for a missing (401) or unknown (404) key, whatever is sent."""
        body = MISSING_KEY if status == 401 else UNKNOWN_KEY
        return self._add_fault(Fault("status", path, times, status, dict(body)))

    def hang(
        self, seconds: float = 10.0, *, times: int | None = None, path: str | None = None
    ) -> Fault:
        """Wait ``seconds`` before answering normally: longer than the client's timeout."""
        return self._add_fault(Fault("hang", path, times, seconds=seconds))

    def drop_connection(
        self, *, mid_body: bool = False, times: int | None = None, path: str | None = None
    ) -> Fault:
        """Close the socket without an answer, or (mid_body) after half of one."""
        kind: Literal["drop", "truncate"] = "truncate" if mid_body else "drop"
        return self._add_fault(Fault(kind, path, times))

    def _add_fault(self, fault: Fault) -> Fault:
        fault.scope = _path_or_none(fault.scope)  # "identify-user" limits it to /identify-user
        return super()._add_fault(fault)

    # --- recording ---

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        path = _endpoint(path)
        return [
            r
            for r in self.received
            if r.path == path and (method is None or r.method == method.upper())
        ]

    def wait_for(
        self,
        what: int | Callable[[RecordedRequest], bool] = 1,
        timeout: float = 2.0,
        *,
        path: str | None = None,
    ) -> list[RecordedRequest]:
        """Wait until ``what`` requests (or one matching ``what``) arrived; return the matches.

        ``path`` narrows both forms. Raises AssertionError listing everything received.
        """
        wanted = _path_or_none(path)
        return self._wait_for(what, timeout, lambda r: wanted in (None, r.path), f"path={path}")

    # --- seeding and inspecting data ---

    def add_segment(self, name: str, *, is_manual: bool = True, uuid: str | None = None) -> Segment:
        with self._lock:
            segment = Segment(uuid or _new_uuid(), name, is_manual, _now(), self._next_seq())
            self._segments[segment.uuid] = segment
            return segment

    def add_form(
        self,
        name: str,
        *,
        status: Literal["published", "draft", "archived"] = "published",
        uuid: str | None = None,
    ) -> Form:
        with self._lock:
            form = Form(uuid or _new_uuid(), name, status, _now(), self._next_seq())
            self._forms[form.uuid] = form
            return form

    def add_contact(
        self,
        *,
        remote_id: str | None = None,
        email: str | None = None,
        attributes: dict[str, Any] | None = None,
        account: dict[str, Any] | None = None,
        segments: Iterable[Segment | str] = (),
        first_seen_at: datetime | str | None = None,
        last_seen_at: datetime | str | None = None,
    ) -> Contact:
        """Seed a contact; ``account`` is shaped as in identify-user: ``{id, name, ...traits}``."""
        with self._lock:
            first = _as_datetime(first_seen_at) or _now()
            contact = Contact(
                _new_uuid(),
                remote_id,
                email,
                first,
                _as_datetime(last_seen_at) or first,
                dict(attributes or {}),
                [s.uuid if isinstance(s, Segment) else s for s in segments],
                seq=self._next_seq(),
            )
            self._contacts[contact.uuid] = contact
            if account is not None:
                contact.account_uuid = self._upsert_account(account, first).uuid
            return contact

    def seed_contacts(
        self, count: int, *, start: datetime | None = None, step: timedelta = timedelta(hours=1)
    ) -> list[Contact]:
        """``count`` contacts user-1..user-N, first seen ``step`` apart from ``start``."""
        start = start or datetime(2024, 1, 1, tzinfo=UTC)
        return [
            self.add_contact(
                remote_id=f"user-{n}",
                email=f"user{n}@example.com",
                attributes={"name": f"User {n}", "plan": "pro" if n % 2 else "free"},
                first_seen_at=start + step * (n - 1),
            )
            for n in range(1, count + 1)
        ]

    def add_response(
        self,
        *,
        form: Form | str,
        contact: Contact | str,
        data: dict[str, Any],
        completed_at: datetime | str | None = None,
        partial: bool = False,
    ) -> FormResponse:
        with self._lock:
            at = _as_datetime(completed_at) or _now()
            response = FormResponse(
                _new_uuid(),
                form.uuid if isinstance(form, Form) else form,
                contact.uuid if isinstance(contact, Contact) else contact,
                dict(data),
                created_at=at,
                completed_at=None if partial else at,
                seq=self._next_seq(),
            )
            self._responses[response.uuid] = response
            return response

    @property
    def contacts(self) -> list[Contact]:
        with self._lock:
            return list(self._contacts.values())

    @property
    def accounts(self) -> list[Account]:
        with self._lock:
            return list(self._accounts.values())

    def contact(
        self, *, id: str | None = None, email: str | None = None, uuid: str | None = None
    ) -> Contact | None:
        with self._lock:
            if uuid is not None:
                return self._contacts.get(uuid)
            return self._find_contact(id, email)

    def account(self, remote_id: str) -> Account | None:
        with self._lock:
            return self._account_by_remote_id(remote_id)

    def contact_json(self, contact: Contact) -> dict[str, Any]:
        """The contact as the API shows it."""
        with self._lock:
            account = self._accounts.get(contact.account_uuid or "")
            return {
                "uuid": contact.uuid,
                "remote_id": contact.remote_id,
                "email": contact.email,
                "display_name": contact.display_name,
                "first_seen_at": _iso(contact.first_seen_at),
                "last_seen_at": _iso(contact.last_seen_at),
                "attributes": dict(contact.attributes),
                "segments": [
                    {"uuid": s.uuid, "name": s.name}
                    for s in map(self._segments.get, contact.segment_uuids)
                    if s is not None
                ],
                "account": _account_json(account) if account else None,
            }

    def webhook_payload(
        self,
        contact: Contact,
        *,
        triggered_event: str = "Survey Completed",
        response: FormResponse | None = None,
    ) -> dict[str, Any]:
        """What Refiner would POST to a webhook about ``contact`` (and a survey response)."""
        item = self.contact_json(contact)
        account = item.pop("account")
        payload: dict[str, Any] = {
            "project_uuid": self.project_uuid,
            "triggered_event": triggered_event,
            **item,
        }
        if account:
            payload["account"] = {
                k: account[k] for k in ("uuid", "remote_id", "display_name", "domain")
            }
        if response is not None:
            form = self._forms[response.form_uuid]
            payload["form"] = {"uuid": form.uuid, "name": form.name}
            payload["response"] = {
                "uuid": response.uuid,
                "completed_at": _iso(response.completed_at),
                "data": dict(response.data),
            }
        return payload

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # --- HTTP handling ---

    def _serve(self, handler: Handler) -> None:
        split = urlsplit(handler.path)
        raw = read_body(handler)
        body, body_error = _parse_body(raw, handler.headers.get("Content-Type", ""))
        record = RecordedRequest(
            method=handler.command,
            path=_endpoint(split.path) if _in_api(split.path) else split.path,
            headers=dict(handler.headers.items()),
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            body=body,
            raw_body=raw,
            received_at=time.time(),
        )
        fault = self._arrive(record, record.path)
        if self._fault_answered(handler, record, fault):
            return
        try:
            if not _in_api(split.path):
                raise not_found("Route")
            if body_error:
                raise ApiError(400, {"message": body_error})
            with self._lock:
                status, answer = self._dispatch(record, {**record.query, **(body or {})})
            headers: dict[str, str] = {}
        except ApiError as error:
            status, answer, headers = error.status, error.body, error.headers
        truncate = fault is not None and fault.kind == "truncate"
        self._reply(handler, record, status, answer, headers, truncate=truncate)

    def _dispatch(self, record: RecordedRequest, params: Params) -> tuple[int, dict[str, Any]]:
        routes = self._routes()
        methods = {method for method, path in routes if path == record.path}
        if not methods:
            raise not_found("Route")
        if record.method not in methods:
            raise ApiError(405, {"message": f"The {record.method} method is not supported."})
        key = self._authenticate(record, params)
        params.pop("api_key", None)
        self._throttle(("key", key), self.rate_limit_per_key)
        user = params.get("id") or params.get("email")
        if record.path in ("/identify-user", "/track-event") and isinstance(user, str | int):
            self._throttle(("user", key, str(user)), self.rate_limit_per_user)
        return 200, routes[record.method, record.path](params)

    def _routes(self) -> dict[tuple[str, str], Callable[[Params], dict[str, Any]]]:
        return {
            ("GET", "/"): self._root,
            ("POST", "/identify-user"): self._identify_user,
            ("POST", "/track-event"): self._track_event,
            ("GET", "/contacts"): self._list_contacts,
            ("GET", "/contact"): lambda p: self.contact_json(self._contact_from(p)),
            ("DELETE", "/contact"): self._delete_contact,
            ("GET", "/segments"): self._list_segments,
            ("POST", "/sync-segment"): lambda p: self._sync_segment(p, add=True),
            ("DELETE", "/sync-segment"): lambda p: self._sync_segment(p, add=False),
            ("GET", "/forms"): self._list_forms,
            ("GET", "/responses"): self._list_responses,
            ("GET", "/account"): self._account_info,
        }

    def _authenticate(self, record: RecordedRequest, params: Params) -> str:
        header = record.header("Authorization")
        if header:
            scheme, _, credentials = header.strip().partition(" ")
            key = None
            if scheme.lower() == "bearer":
                key = credentials.strip()
            elif scheme.lower() == "basic":
                try:
                    key = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
                except (binascii.Error, UnicodeDecodeError):
                    key = None
            if not key:
                raise ApiError(401, dict(MALFORMED_KEY))
        else:
            key = params.get("api_key")
            if not key:
                raise ApiError(401, dict(MISSING_KEY))
        if not isinstance(key, str) or key not in self.api_keys:
            raise ApiError(404, dict(UNKNOWN_KEY))
        return key

    def _throttle(self, bucket: tuple[str, ...], limit: int) -> None:
        now = time.monotonic()
        hits = self._hits.setdefault(bucket, deque())
        while hits and hits[0] <= now - RATE_WINDOW_SECONDS:
            hits.popleft()
        if len(hits) >= limit:
            retry_after = max(1, math.ceil(hits[0] + RATE_WINDOW_SECONDS - now))
            raise ApiError(
                429, {"message": "Too Many Attempts."}, {"Retry-After": str(retry_after)}
            )
        hits.append(now)  # refused attempts do not count, as with Laravel's throttle

    # --- endpoints (called with the lock held) ---

    def _root(self, params: Params) -> dict[str, Any]:
        return {
            "project_uuid": self.project_uuid,
            "project_name": self.project_name,
            "message": "API key is valid",
        }

    def _identify_user(self, params: Params) -> dict[str, Any]:
        remote_id, email = _identity(params)
        account = params.get("account")
        if account is not None and not isinstance(account, dict):
            raise invalid("account", "The account must be an object.")
        if account is not None and _identifier(account, "id", "account.id") is None:
            raise invalid("account.id", "The account.id field is required.")
        traits = {k: v for k, v in params.items() if k not in ("id", "email", "account")}
        self._check_traits(traits, "")
        self._check_traits(account or {}, "account.")

        now = _now()
        contact = self._upsert_contact(remote_id, email, now)
        contact.attributes.update(traits)
        if account is not None:
            contact.account_uuid = self._upsert_account(account, now).uuid
        return {"message": "ok", "contact_uuid": contact.uuid}

    def _track_event(self, params: Params) -> dict[str, Any]:
        remote_id, email = _identity(params)
        event = params.get("event")
        if not isinstance(event, str) or not event.strip():
            raise invalid("event", "The event field is required.")
        # Unverified: whether tracking an unknown user creates it. The fake only refreshes
        # last-seen of a known contact; the event itself is kept only in the request log.
        contact = self._find_contact(remote_id, email)
        if contact is not None:
            contact.last_seen_at = _now()
        return {"message": "ok"}

    def _list_contacts(self, params: Params) -> dict[str, Any]:
        contacts = list(self._contacts.values())
        if search := str(params.get("search") or "").lower():
            contacts = [
                c
                for c in contacts
                if any(
                    search in str(v or "").lower() for v in (c.email, c.remote_id, c.display_name)
                )
            ]
        if form_uuid := params.get("form_uuid"):
            answered = {
                r.contact_uuid for r in self._responses.values() if r.form_uuid == form_uuid
            }
            contacts = [c for c in contacts if c.uuid in answered]
        if segment_uuid := params.get("segment_uuid"):
            contacts = [c for c in contacts if segment_uuid in c.segment_uuids]
        order_by = params.get("order_by") or "first_seen_at"
        if order_by not in ("first_seen_at", "last_seen_at", "last_form_submission_at"):
            raise invalid("order_by", "The selected order by is invalid.")

        def sort_value(contact: Contact) -> datetime | None:
            if order_by == "last_form_submission_at":
                done = [
                    r.completed_at
                    for r in self._responses.values()
                    if r.contact_uuid == contact.uuid and r.completed_at
                ]
                return max(done, default=None)
            value: datetime = getattr(contact, order_by)
            return value

        rows = [(_sort_key(sort_value(c), c.seq), self.contact_json(c)) for c in contacts]
        return _paginate(rows, params)

    def _delete_contact(self, params: Params) -> dict[str, Any]:
        contact = self._contact_from(params)
        del self._contacts[contact.uuid]
        for response in [r for r in self._responses.values() if r.contact_uuid == contact.uuid]:
            del self._responses[response.uuid]
        return {"message": "ok"}

    def _list_segments(self, params: Params) -> dict[str, Any]:
        rows = [
            (
                _sort_key(s.created_at, s.seq),
                {"uuid": s.uuid, "name": s.name, "is_manual": s.is_manual},
            )
            for s in self._segments.values()
        ]
        return _paginate(rows, params)

    def _sync_segment(self, params: Params, *, add: bool) -> dict[str, Any]:
        remote_id, email = _identity(params)
        segment_uuid = params.get("segment_uuid")
        if not segment_uuid:
            raise invalid("segment_uuid", "The segment uuid field is required.")
        segment = self._segments.get(str(segment_uuid))
        if segment is None:
            raise not_found("Segment")
        if not segment.is_manual:
            raise invalid("segment_uuid", "Only manual segments can be synced.")
        # Unverified: whether an unknown user is created here; the fake upserts, as identify does.
        contact = self._upsert_contact(remote_id, email, _now())
        if add and segment.uuid not in contact.segment_uuids:
            contact.segment_uuids.append(segment.uuid)
        if not add and segment.uuid in contact.segment_uuids:
            contact.segment_uuids.remove(segment.uuid)
        return {"message": "ok", "contact_uuid": contact.uuid, "segment_uuid": segment.uuid}

    def _list_forms(self, params: Params) -> dict[str, Any]:
        wanted = params.get("list") or "all"
        statuses = {"published": "published", "drafts": "draft", "archived": "archived"}
        if wanted != "all" and wanted not in statuses:
            raise invalid("list", "The selected list is invalid.")
        rows = [
            (_sort_key(f.created_at, f.seq), {"uuid": f.uuid, "name": f.name, "status": f.status})
            for f in self._forms.values()
            if wanted == "all" or f.status == statuses[wanted]
        ]
        return _paginate(rows, params)

    def _list_responses(self, params: Params) -> dict[str, Any]:
        include = params.get("include") or "completed"
        if include not in ("completed", "partials", "all"):
            raise invalid("include", "The selected include is invalid.")
        start = _date_param(params, "date_range_start")
        end = _date_param(params, "date_range_end")
        segment_uuid = params.get("segment_uuid")
        rows = []
        for r in self._responses.values():
            contact = self._contacts.get(r.contact_uuid)
            form = self._forms.get(r.form_uuid)
            at = r.completed_at or r.created_at
            if (
                (include == "completed" and r.completed_at is None)
                or (include == "partials" and r.completed_at is not None)
                or (params.get("form_uuid") and r.form_uuid != params["form_uuid"])
                or (segment_uuid and (contact is None or segment_uuid not in contact.segment_uuids))
                or (start and at < start)
                or (end and at >= end + timedelta(days=1))
            ):
                continue
            item = {
                "uuid": r.uuid,
                "form": {"uuid": r.form_uuid, "name": form.name if form else None},
                "contact": self.contact_json(contact) if contact else None,
                "created_at": _iso(r.created_at),
                "completed_at": _iso(r.completed_at),
                "data": dict(r.data),
            }
            rows.append((_sort_key(at, r.seq), item))
        return _paginate(rows, params)

    def _account_info(self, params: Params) -> dict[str, Any]:
        # The reference says only "plan and usage counters"; these names are the fake's own.
        return {
            "project_uuid": self.project_uuid,
            "project_name": self.project_name,
            "plan": "growth",
            "usage": {
                "contacts": len(self._contacts),
                "responses": len(self._responses),
                "api_requests": len(self._received),
            },
        }

    # --- store helpers (lock held) ---

    def _find_contact(self, remote_id: str | None, email: str | None) -> Contact | None:
        if remote_id is not None:
            found = next((c for c in self._contacts.values() if c.remote_id == remote_id), None)
            if found is not None:
                return found
        if email is not None:
            for contact in self._contacts.values():
                same_email = (contact.email or "").lower() == email.lower()
                # An email only finds a contact that has no other id than the one given.
                if same_email and (remote_id is None or contact.remote_id is None):
                    return contact
        return None

    def _contact_from(self, params: Params) -> Contact:
        if uuid := params.get("uuid"):
            contact = self._contacts.get(str(uuid))
        else:
            remote_id, email = _identity(params, fields="id, email or uuid")
            contact = self._find_contact(remote_id, email)
        if contact is None:
            raise not_found("Contact")
        return contact

    def _upsert_contact(self, remote_id: str | None, email: str | None, now: datetime) -> Contact:
        contact = self._find_contact(remote_id, email)
        if contact is None:
            contact = Contact(_new_uuid(), remote_id, email, now, now, seq=self._next_seq())
            self._contacts[contact.uuid] = contact
        contact.remote_id = remote_id or contact.remote_id
        contact.email = email or contact.email
        contact.last_seen_at = now
        return contact

    def _account_by_remote_id(self, remote_id: str) -> Account | None:
        return next((a for a in self._accounts.values() if a.remote_id == remote_id), None)

    def _upsert_account(self, fields: dict[str, Any], now: datetime) -> Account:
        remote_id = str(fields["id"])
        account = self._account_by_remote_id(remote_id)
        if account is None:
            account = Account(_new_uuid(), remote_id, None, now, now)
            self._accounts[account.uuid] = account
        account.display_name = fields.get("name") or account.display_name
        account.last_seen_at = now
        account.attributes.update({k: v for k, v in fields.items() if k not in ("id", "name")})
        return account

    def _check_traits(self, traits: dict[str, Any], prefix: str) -> None:
        if not self.reject_nested_traits:
            return
        for name, value in traits.items():
            if isinstance(value, dict | list):
                raise invalid(
                    prefix + name,
                    f"The {prefix}{name} field must be a string, number, boolean or date.",
                )


# --- helpers --------------------------------------------------------------------------------


def _parse_body(raw: bytes, content_type: str) -> tuple[Any, str | None]:
    """The body's fields and None, or None and why the body is refused."""
    if not raw.strip():
        return {}, None
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        fields: dict[str, Any] = {}
        for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
            # PHP-style `account[id]=acct-1`, as Laravel reads form fields.
            if match := re.fullmatch(r"(\w+)\[(\w+)\]", name):
                nested = fields.setdefault(match[1], {})
                if isinstance(nested, dict):
                    nested[match[2]] = value
            else:
                fields[name] = value
        return fields, None
    if media_type != "application/json" and not media_type.endswith("+json"):
        return None, f"Unsupported content type {media_type or '(none)'}: send JSON or form fields."
    try:
        parsed = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"Invalid JSON body: {error}"
    if not isinstance(parsed, dict):
        return None, "The JSON body must be an object."
    return parsed, None


def _identifier(params: Params, name: str, label: str | None = None) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid(label or name, f"The {label or name} must be a string.")
    return str(value).strip() or None


def _identity(params: Params, fields: str = "id or email") -> tuple[str | None, str | None]:
    remote_id = _identifier(params, "id")
    email = _identifier(params, "email")
    if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise invalid("email", "The email must be a valid email address.")
    if remote_id is None and email is None:
        raise ApiError(
            422,
            {
                "message": f"One of {fields} is required.",
                "errors": {"id": ["The id field is required when email is not present."]},
            },
        )
    return remote_id, email


def _paginate(rows: list[tuple[SortKey, dict[str, Any]]], params: Params) -> dict[str, Any]:
    """One page of ``rows``, newest first, by page number or by cursor.

    The cursor holds the sort key of the page's last item, so paging on by cursor stays
    correct while new items arrive (page numbers shift; cursors do not).
    """
    rows = sorted(rows, key=lambda row: row[0], reverse=True)
    page_length = _int_param(params, "page_length", DEFAULT_PAGE_LENGTH, maximum=MAX_PAGE_LENGTH)
    if cursor := params.get("page_cursor"):
        after = _decode_cursor(str(cursor))
        start = next((i for i, (key, _) in enumerate(rows) if key < after), len(rows))
    else:
        start = (_int_param(params, "page", 1) - 1) * page_length
    chunk = rows[start : start + page_length]
    more = start + len(chunk) < len(rows)
    return {
        "items": [item for _, item in chunk],
        "pagination": {
            "items_count": len(rows),
            "current_page": start // page_length + 1,
            "last_page": max(1, math.ceil(len(rows) / page_length)),
            "page_length": page_length,
            "next_page_cursor": _encode_cursor(chunk[-1][0]) if chunk and more else None,
        },
    }


def _sort_key(value: datetime | None, seq: int) -> SortKey:
    # Items without a value sort last (newest first); seq breaks ties in insertion order.
    return (value is not None, value.timestamp() if value else 0.0, seq)


def _encode_cursor(key: SortKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_cursor(cursor: str) -> SortKey:
    try:
        has_value, timestamp, seq = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return (bool(has_value), float(timestamp), int(seq))
    except (ValueError, TypeError, binascii.Error):
        raise invalid("page_cursor", "The page cursor is invalid.") from None


def _int_param(params: Params, name: str, default: int, maximum: int | None = None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise invalid(name, f"The {name} must be an integer.") from None
    if value < 1:
        raise invalid(name, f"The {name} must be at least 1.")
    if maximum is not None and value > maximum:
        raise invalid(name, f"The {name} may not be greater than {maximum}.")
    return value


def _date_param(params: Params, name: str) -> datetime | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return _as_datetime(str(raw))
    except ValueError:
        raise invalid(name, f"The {name} is not a valid date.") from None


def _account_json(account: Account) -> dict[str, Any]:
    return {
        "uuid": account.uuid,
        "remote_id": account.remote_id,
        "domain": account.domain,
        "display_name": account.display_name,
        "first_seen_at": _iso(account.first_seen_at),
        "last_seen_at": _iso(account.last_seen_at),
        "attributes": dict(account.attributes),
    }


def _in_api(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def _endpoint(path: str) -> str:
    """The endpoint as recorded: "identify-user" and "/v1/identify-user" are "/identify-user"."""
    if _in_api(path):
        path = path[len(API_PREFIX) :]
    return "/" + path.strip("/")


def _path_or_none(path: str | None) -> str | None:
    return None if path is None else _endpoint(path)


def _now() -> datetime:
    return datetime.now(UTC)


def _new_uuid() -> str:
    return str(uuidlib.uuid4())


def _as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return (
        value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        if value
        else None
    )


# --- webhooks: Refiner calling us ------------------------------------------------------------


@dataclass
class WebhookResult:
    status: int
    body: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def sample_webhook_payload(**overrides: Any) -> dict[str, Any]:
    """A "Survey Completed" webhook body shaped like Refiner's; ``overrides`` replace fields."""
    payload: dict[str, Any] = {
        "uuid": "6f1c2a8e-0d4b-4c8e-9a51-3b7f2d9e4a10",
        "project_uuid": "0b9d5f7e-2c3a-4e1f-8b6d-9a4c7e2f1d35",
        "triggered_event": "Survey Completed",
        "remote_id": "user-123",
        "email": "jane@example.com",
        "display_name": "Jane Doe",
        "first_seen_at": "2024-03-01T09:30:00Z",
        "last_seen_at": "2024-05-14T16:02:11Z",
        "attributes": {"plan": "pro", "nps": 9},
        "segments": [{"uuid": "2e7a9c41-5b8d-4f3e-a6c2-1d9f8b7e3a54", "name": "Power users"}],
        "account": {
            "uuid": "9c3e1a7b-4d2f-4b8a-9e6c-5f1d2a8b7c93",
            "remote_id": "acct-1",
            "display_name": "Initech",
            "domain": "initech.com",
        },
        "form": {"uuid": "4a8b2c6d-1e3f-4a5b-8c7d-9e0f1a2b3c4d", "name": "NPS"},
        "response": {
            "uuid": "7d5e3f1a-9b2c-4d6e-8f0a-1b3c5d7e9f20",
            "completed_at": "2024-05-14T16:02:11Z",
            "data": {"score": 9, "why": "fast"},
        },
    }
    payload.update(overrides)
    return payload


def send_webhook(
    url: str, payload: dict[str, Any], *, token: str | None = None, timeout: float = 5.0
) -> WebhookResult:
    """POST ``payload`` as Refiner does: JSON, the secret token as a Bearer Authorization."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = requests.post(url, json=payload, headers=headers, timeout=timeout)
    return WebhookResult(response.status_code, response.text, dict(response.headers))


# --- for pytest fixtures --------------------------------------------------------------------


def serve_fake_refiner(**options: Any) -> Iterator[FakeRefiner]:
    """A running fake for the length of one test: ``yield from serve_fake_refiner()``."""
    with FakeRefiner(**options) as server:
        yield server

"""Import billing customers from CSV: a Stripe customers export, or any CSV with its columns
mapped. Valid rows are kept; each refused row is reported with its line number and reason.

A row needs a billing id, and an email or a userId to find or make its user by:
- with a userId: that user gets the billing id (made, without events yet, if unknown);
- else with an email: the one user holding it gets the billing id; with no such user a new
  profile is made (origin "import", no userId: the first identify with that email claims it);
  when several users share the email the row is reported and nothing is guessed.
Re-importing the same file changes nothing; a corrected billing id replaces the old one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from destinations.connectors.kana import billing_id_problem
from destinations.identity.traits import normalize_email
from destinations.models import Profile, ProfileOrigin

FIELDS = {
    "billing_id": "Billing id",
    "email": "Email",
    "name": "Name",
    "user_id": "userId",
}
# Stripe's customers export: "id" is the customer id (cus_...).
STRIPE_COLUMNS = {"billing_id": "id", "email": "Email", "name": "Name"}
CHUNK = 1000
EXTRA = "\x00extra"  # where DictReader puts the fields of a row longer than the header
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ImportRefused(ValueError):
    """The whole file cannot be read; the message says why."""


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    billing_id: str
    email: str | None
    name: str
    user_id: str | None


@dataclass
class Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    examples: list[tuple[int, str, Row]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "failed": len(self.failed),
            "errors": [{"line": line, "reason": reason} for line, reason in self.failed[:500]],
        }


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportRefused(
            f"the file is not UTF-8 (byte 0x{data[exc.start]:02x} at position {exc.start}); "
            "save it as CSV UTF-8 and upload it again"
        ) from exc


def header(data: bytes) -> list[str]:
    text = decode(data)
    reader = csv.reader(io.StringIO(text))
    try:
        columns = next(reader)
    except StopIteration:
        raise ImportRefused("the file is empty") from None
    except csv.Error as exc:
        raise ImportRefused(f"the file is not valid CSV: {exc}") from exc
    columns = [c.strip() for c in columns]
    if not any(columns):
        raise ImportRefused("the first line must name the columns")
    return columns


def guess_mapping(columns: Sequence[str]) -> dict[str, str]:
    """Stripe's export is recognised by its columns; otherwise same-named columns are used."""
    if {"id", "Email"} <= set(columns):
        return {k: v for k, v in STRIPE_COLUMNS.items() if v in columns}
    lowered = {c.lower().replace(" ", "_"): c for c in columns}
    aliases = {
        "billing_id": ("billing_id", "billingid", "billinguserid", "customer_id", "id"),
        "email": ("email", "e-mail"),
        "name": ("name", "full_name"),
        "user_id": ("user_id", "userid"),
    }
    mapping: dict[str, str] = {}
    for name, candidates in aliases.items():
        for candidate in candidates:
            if candidate in lowered:
                mapping[name] = lowered[candidate]
                break
    return mapping


def check_mapping(columns: Sequence[str], mapping: Mapping[str, str]) -> None:
    unknown = [c for c in mapping.values() if c and c not in columns]
    if unknown:
        raise ImportRefused(f"no column named {unknown[0]!r} in the file")
    if not mapping.get("billing_id"):
        raise ImportRefused("choose the column that holds the billing id")
    if not mapping.get("email") and not mapping.get("user_id"):
        raise ImportRefused("choose the email column or the userId column to match users by")


def rows(data: bytes, mapping: Mapping[str, str]) -> Iterator[Row | tuple[int, str]]:
    """Each data line as a Row, or (line number, reason) when it cannot be used."""
    columns = header(data)
    check_mapping(columns, mapping)
    reader = csv.DictReader(
        io.StringIO(decode(data)), fieldnames=columns, restkey=EXTRA, strict=True
    )
    next(reader)
    line = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            yield line, f"not valid CSV: {exc}"
            return
        line = reader.line_num
        extra = record.get(EXTRA)
        if extra:
            yield line, f"has {len(columns) + len(extra)} fields; the header has {len(columns)}"
            continue
        yield parse_row(line, record, mapping)


def parse_row(
    line: int, record: Mapping[str, str | None], mapping: Mapping[str, str]
) -> Row | tuple[int, str]:
    def value(name: str) -> str:
        column = mapping.get(name)
        return (record.get(column) or "").strip() if column else ""

    billing_id, raw_email, user_id = value("billing_id"), value("email"), value("user_id")
    if not billing_id:
        return line, "no billing id"
    problem = billing_id_problem(billing_id)
    if problem:
        return line, problem
    if raw_email and not EMAIL.match(raw_email):
        return line, f"{raw_email!r} is not an email address"
    if not raw_email and not user_id:
        return line, "no email and no userId to find the user by"
    return Row(line, billing_id, normalize_email(raw_email), value("name"), user_id or None)


def preview(data: bytes, mapping: Mapping[str, str], *, examples: int = 20) -> Outcome:
    """What the import would do, without writing anything."""
    outcome = Outcome()
    with transaction.atomic():
        apply_all(data, mapping, outcome, examples=examples)
        transaction.set_rollback(True)
    return outcome


def apply_all(
    data: bytes,
    mapping: Mapping[str, str],
    outcome: Outcome,
    *,
    examples: int = 0,
    progress: Any = None,
) -> Outcome:
    batch: list[Row] = []
    for item in rows(data, mapping):
        if isinstance(item, Row):
            batch.append(item)
        else:
            outcome.failed.append(item)
        if len(batch) >= CHUNK:
            apply_chunk(batch, outcome, examples)
            batch = []
            if progress:
                progress(outcome)
    if batch:
        apply_chunk(batch, outcome, examples)
    if progress:
        progress(outcome)
    return outcome


def apply_chunk(batch: list[Row], outcome: Outcome, examples: int) -> None:
    """A chunk in one transaction, with two lookups and bulk writes whatever its size."""
    with transaction.atomic():
        # A user id merged away is answered by its survivor.
        by_user = {
            p.user_id: p.merged_into or p
            for p in Profile.objects.filter(
                user_id__in=[r.user_id for r in batch if r.user_id]
            ).select_related("merged_into")
        }
        by_email: dict[str, list[Profile]] = {}
        for profile in Profile.objects.filter(
            email__in=[r.email for r in batch if r.email], merged_into__isnull=True
        ):
            by_email.setdefault(profile.email or "", []).append(profile)
        changed: dict[int, Profile] = {}
        created: list[Profile] = []
        now = timezone.now()
        for row in batch:
            target, reason = find_target(row, by_user, by_email)
            if reason:
                outcome.failed.append((row.line, reason))
                continue
            if target is None:
                profile = Profile(
                    user_id=row.user_id,
                    email=row.email,
                    name=row.name,
                    billing_id=row.billing_id,
                    origin=ProfileOrigin.IMPORT,
                    created_at=now,
                )
                created.append(profile)
                if row.user_id:
                    by_user[row.user_id] = profile
                if row.email:
                    by_email.setdefault(row.email, []).append(profile)
                note(outcome, examples, row, "new user")
                continue
            if target.billing_id == row.billing_id:
                outcome.unchanged += 1
                note(outcome, examples, row, f"unchanged ({target})")
                continue
            before = target.billing_id
            target.billing_id = row.billing_id
            if row.name and not target.name:
                target.name = row.name
            if target.pk:
                changed[target.pk] = target
            outcome.updated += 1
            action = "billing id set" if not before else f"billing id {before} replaced"
            note(outcome, examples, row, f"{action} ({target})")
        Profile.objects.bulk_create(created, batch_size=CHUNK)
        outcome.created += len(created)
        Profile.objects.bulk_update(
            list(changed.values()), ["billing_id", "name"], batch_size=CHUNK
        )


def find_target(
    row: Row, by_user: Mapping[str | None, Profile], by_email: Mapping[str, list[Profile]]
) -> tuple[Profile | None, str]:
    if row.user_id:
        return by_user.get(row.user_id), ""
    holders = by_email.get(row.email or "", [])
    if len(holders) > 1:
        return None, f"{len(holders)} users share {row.email}: merge them first"
    return (holders[0] if holders else None), ""


def note(outcome: Outcome, examples: int, row: Row, action: str) -> None:
    if len(outcome.examples) < examples:
        outcome.examples.append((row.line, action, row))

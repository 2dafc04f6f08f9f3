"""Import billing customers from CSV: a Stripe customers export, or any CSV with its columns
mapped. Valid rows are kept; each refused row is reported with its line number and reason.

A row needs a billing id, and an email or a userId to find or make its user by:
- with a userId: that user gets the billing id (made, without events yet, if unknown);
- else with an email: the one user holding it gets the billing id; with no such user a new
  profile is made (origin "import", no userId: the first identify with that email claims it);
  when several users share the email the row is reported and nothing is guessed.
Re-importing the same file changes nothing; a corrected billing id replaces the old one.

Reading the file (ADR 0020): it is UTF-8, or UTF-16 with its byte order mark, or it is refused
whole. Lines end at CRLF, LF or CR, and a row's line number is the file's line its record
starts on, quoted line breaks counted. A row whose quoting is broken is refused and reading
resumes on the line after the one it started on, so the rows after it are still read. Cells
the conflicts export wrote as text (``csv_cells``) are read back as the values they stand for.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from destinations.identity.billing_ids import billing_id_problem
from destinations.models import Profile, ProfileOrigin
from destinations.people.csv_cells import from_text
from destinations.traits import BILLING_ID_CHARS, EMAIL_CHARS, NAME_CHARS, normalize_email

FIELDS = {
    "billing_id": "Billing id",
    "email": "Email",
    "name": "Name",
    "user_id": "userId",
}
# Stripe's customers export: "id" is the customer id (cus_...).
STRIPE_COLUMNS = {"billing_id": "id", "email": "Email", "name": "Name"}
CHUNK = 1000
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USER_ID_CHARS = 255  # Profile.user_id's column
SHOWN_CHARS = 60  # of a refused value, in its reason

# The csv module refuses a field longer than 131,072 characters, and a reader stops at the
# first error: one long name cost every row after it. The file is whole in memory already (at
# most 50 MB), so the limit protects nothing here; fields as long as a file are read (a name is
# then cut to its column, as ingest cuts a trait's). The limit is the process's: only this
# module reads CSV.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))

UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
SAVE_AS = "save it as CSV UTF-8 and upload it again"
LINE_BREAK = re.compile(r"\r\n|\r|\n")


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
    """The file's text. UTF-8, with or without a byte order mark; UTF-16 only when its byte
    order mark says so. Anything else is refused whole: read in the wrong encoding, rows would
    import wrong names and emails without a word."""
    if data.startswith(UTF32_BOMS):  # before UTF-16: FF FE 00 00 starts both
        raise ImportRefused(f"the file is UTF-32; {SAVE_AS}")
    if data.startswith(UTF16_BOMS):
        encoding, name = "utf-16", "UTF-16"
    elif looks_like_utf16(data):
        raise ImportRefused(
            f"the file looks like UTF-16 without a byte order mark to say so; {SAVE_AS}"
        )
    else:
        encoding, name = "utf-8-sig", "UTF-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = len(LINE_BREAK.findall(data[: exc.start].decode(encoding, "replace"))) + 1
        raise ImportRefused(
            f"the file is not {name} (byte 0x{data[exc.start]:02x} on line {line}, at position "
            f"{exc.start}); {SAVE_AS}"
        ) from exc


def looks_like_utf16(data: bytes) -> bool:
    """UTF-16 without a byte order mark: a zero byte beside the header's first letter, or in
    every other place of much of the file (Latin letters). As UTF-8 it would read as text full
    of NUL characters."""
    sample = data[:4096]
    half = len(sample) // 2
    if not half or b"\x00" not in sample:
        return False
    if sample[:2].count(0) == 1:
        return True
    zeros = max(sample[0::2].count(0), sample[1::2].count(0))
    return zeros * 2 >= half


class LineFeed:
    """The file's lines for ``csv.reader``, counting how many it has taken: a record starts on
    the line after those taken before it, and reading can resume on any line."""

    def __init__(self, lines: list[str], taken: int = 0) -> None:
        self.lines = lines
        self.taken = taken

    def __iter__(self) -> LineFeed:
        return self

    def __next__(self) -> str:
        if self.taken >= len(self.lines):
            raise StopIteration
        self.taken += 1
        return self.lines[self.taken - 1]


@dataclass(frozen=True)
class CsvFile:
    columns: list[str]
    lines: list[str]  # with their line endings; a quoted field may span several
    body: int  # the index in ``lines`` of the first line after the header

    def records(self) -> Iterator[tuple[int, list[str], str]]:
        """(line number, fields, "") for each record after the header, or (line number, [],
        reason) for one that is not valid CSV; reading then resumes on the next line."""
        feed = LineFeed(self.lines, self.body)
        reader = csv.reader(feed, strict=True)
        while True:
            first = feed.taken
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield first + 1, [], csv_problem(exc, lines=feed.taken - first)
                feed.taken = first + 1
                reader = csv.reader(feed, strict=True)
                continue
            yield first + 1, fields, ""


def csv_problem(exc: csv.Error, *, lines: int) -> str:
    """The reason for a record the csv module refused, which took ``lines`` lines."""
    message = str(exc)
    if message == "unexpected end of data":
        return "a quoted field starts on this line and is never closed"
    if message.startswith("',' expected after '\"'"):
        if lines > 1:
            return (
                f"a quoted field starts on this line and, {lines - 1} line"
                f"{'s' if lines > 2 else ''} further, has text after its closing quote"
            )
        return 'a closing quote (") must be followed by a comma or the end of the line'
    return f"not valid CSV: {message}"


def read_file(data: bytes) -> CsvFile:
    """The file's header and lines (raises ImportRefused)."""
    lines = io.StringIO(decode(data), newline="").readlines()
    feed = LineFeed(lines)
    try:
        columns = next(csv.reader(feed, strict=True))
    except StopIteration:
        raise ImportRefused("the file is empty") from None
    except csv.Error as exc:
        problem = csv_problem(exc, lines=feed.taken)
        raise ImportRefused(f"the header line is not valid CSV: {problem}") from exc
    columns = [c.strip() for c in columns]
    if not any(columns):
        raise ImportRefused("the first line must name the columns")
    if any("\x00" in c for c in columns):
        raise ImportRefused(f"the header line holds a NUL character; {SAVE_AS}")
    if not any(line.strip() for line in lines[feed.taken :]):
        raise ImportRefused("the file has no rows after its header line")
    return CsvFile(columns=columns, lines=lines, body=feed.taken)


def header(data: bytes) -> list[str]:
    return read_file(data).columns


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
    twice = [c for c in mapping.values() if c and columns.count(c) > 1]
    if twice:
        raise ImportRefused(f"two columns are named {twice[0]!r}: rename one")
    if not mapping.get("billing_id"):
        raise ImportRefused("choose the column that holds the billing id")
    if not mapping.get("email") and not mapping.get("user_id"):
        raise ImportRefused("choose the email column or the userId column to match users by")


ROW_FIELDS = ("billing_id", "email", "user_id", "name")  # the order parse_row reads them in


def rows(data: bytes, mapping: Mapping[str, str]) -> Iterator[Row | tuple[int, str]]:
    """Each data line as a Row, or (line number, reason) when it cannot be used. Lines with
    nothing in them (blank, or only commas) are skipped."""
    csv_file = read_file(data)
    columns = csv_file.columns
    check_mapping(columns, mapping)
    places = tuple(columns.index(mapping[f]) if mapping.get(f) else None for f in ROW_FIELDS)
    for line, fields, problem in csv_file.records():
        if problem:
            yield line, problem
        elif "".join(fields).strip():
            yield parse_row(line, fields, len(columns), places)


def parse_row(
    line: int, fields: Sequence[str], width: int, places: Sequence[int | None]
) -> Row | tuple[int, str]:
    """A record's fields as a Row, or (line, reason). ``places`` says which field holds each of
    ``ROW_FIELDS``."""
    count = len(fields)
    if count > width and "".join(fields[width:]).strip():
        return line, f"has {count} fields; the header has {width}"
    billing_id, raw_email, user_id, name = (
        from_text(fields[place].strip()) if place is not None and place < count else ""
        for place in places
    )
    if "\x00" in billing_id + raw_email + user_id + name:
        # As at ingest: PostgreSQL cannot store it, and both backends keep the same users.
        return line, "a field holds a NUL character, which cannot be stored"
    if not billing_id:
        return line, "no billing id"
    if len(billing_id) > BILLING_ID_CHARS:
        return line, f"billing id is {len(billing_id):,} characters; at most {BILLING_ID_CHARS}"
    problem = billing_id_problem(billing_id)
    if problem:
        return line, problem
    if len(raw_email) > EMAIL_CHARS:
        return line, f"email is {len(raw_email):,} characters; at most {EMAIL_CHARS}"
    if raw_email and not EMAIL.match(raw_email):
        return line, f"{shown(raw_email)} is not an email address"
    if len(user_id) > USER_ID_CHARS:
        return line, f"userId is {len(user_id):,} characters; at most {USER_ID_CHARS}"
    if not raw_email and not user_id:
        return line, "no email and no userId to find the user by"
    # A longer name is cut to its column, as ingest cuts a trait's.
    return Row(line, billing_id, normalize_email(raw_email), name[:NAME_CHARS], user_id or None)


def shown(value: str) -> str:
    """A refused value as its reason quotes it: in quotes, and cut when long."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}… ({len(value):,} characters)"


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
    outcome.failed.sort()  # rows refused while read and while applied, in the file's order
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

"""Properties of the billing-customer CSV import and the conflicts export, checked with generated
files through the dashboard as an operator uses it (upload, preview, Import, the job):

- no step answers with a server error, and a refusal says what is wrong;
- every valid row is imported (the database is read back), every refused row is listed with its
  line number and a reason naming the problem, and nothing else is made;
- a file in another encoding is refused whole;
- the export writes no cell a spreadsheet would run, and imported back it means what it said.

Each example runs in a transaction that is rolled back, so examples do not see each other's
users (the fixtures' operator and source stay).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from destinations.identity.csv_cells import FORMULA_STARTS, as_text, from_text
from destinations.models import Job, Profile, Upload
from tests.helpers.import_flow import Imported, import_file

pytestmark = pytest.mark.django_db
# Function-scoped fixtures (the logged-in client, the ingest source) are made once for all of a
# test's examples; each example rolls its own writes back (``rolled_back``).
PER_EXAMPLE_STATE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

NAME_CHARS = 255  # Profile.name's column
# A quote before a formula character marks a cell written as text (ADR 0020).
TEXT_MARK = re.compile(r"'+[=+\-@\t\r]")
LINE_BREAK = re.compile(r"\r\n|\r|\n")


@pytest.fixture
def operator_client(client: Client, make_member: Callable[..., User]) -> Client:
    client.force_login(make_member(username="ops", role="operator"))
    return client


@contextmanager
def rolled_back() -> Iterator[None]:
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


# What the files hold ----------------------------------------------------------------------------

HOSTILE = [
    "=SUM(1,1)",
    "@x",
    "",
    "+1",
    "-1",
    "=1+5",
    "'=quoted",
    "''=twice",
    "'",
    "'plain",
    '=HYPERLINK("http://x","y")',
    "=cmd|' /C calc'!A0",
    "\tTab",
    "\r=cr",
    "a,b",
    'say "hi"',
    "two\nlines",
    "cr\rhere",
    "crlf\r\nhere",
    "  padded  ",
    "\u202eevil\u202c",
    "e\u0301",
    "😀 ok",
    "\ufeffbom",
    "line\u2028sep",
    "\x85nel",
]
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
# Longer than the name column, than the csv module's default field limit, and the finding's.
huge = st.builds(
    lambda c, n: c * n, st.sampled_from("xé😀"), st.sampled_from([256, 131_073, 200_000])
)
# Mostly short: a file of several 200,000-character names only costs time.
names = st.one_of(st.sampled_from(HOSTILE), text, text, text, huge)
billing_ids = st.one_of(
    st.from_regex(r"cus_[A-Za-z0-9]{1,24}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9]{1,50}", fullmatch=True),
)
emails = st.builds(
    lambda prefix, local, domain: f"{prefix}{local}@{domain}",
    st.sampled_from(["", "=", "+", "-", "'=", "''+"]),
    st.text(string.ascii_letters + string.digits + "._%+-='!#", min_size=1, max_size=15),
    st.sampled_from(["example.com", "x.co", "mail.example.org"]),
)
user_ids = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["", "=", "+", "-", "@", "\t", "'=", "u-"]),
    st.text(string.ascii_letters + string.digits + "=+-@|!_'", min_size=1, max_size=20),
)


@dataclass(frozen=True)
class Customer:
    """A valid row: what it means, and how it is written."""

    billing_id: str
    email: str  # "" when the row finds its user by userId
    name: str
    user_id: str = ""
    as_text: bool = False  # its cells written as the export writes them
    padded: bool = False  # spaces around its billing id and email cells
    repeated: bool = False  # the same line again right after


@dataclass(frozen=True)
class Refused:
    """A row the import must refuse, and a word its reason must hold."""

    billing_id: str
    email: str
    name: str
    user_id: str = ""
    surplus: str = ""  # a non-blank field past the header's
    reason: str = ""


@dataclass(frozen=True)
class Nothing:
    """A line without data: blank, spaces, or only separators. Skipped, not refused."""

    line: str


Line = Customer | Refused | Nothing


@dataclass(frozen=True)
class CsvCase:
    lines: tuple[Line, ...]
    generic: bool = False  # billing_id,email,name,user_id; else Stripe's id,Email,Name
    extra_columns: tuple[str, ...] = ()
    extra_value: str = ""  # in the unknown columns of the first row (later rows: "n")
    newline: str = "\r\n"
    quote_all: bool = False
    encoding: str = "utf-8"
    broken_end: bool = False  # a last line whose quoted field is never closed


def refused_rows(generic: bool) -> st.SearchStrategy[Refused]:
    valid = {"billing_id": billing_ids, "email": emails, "name": names}
    kinds = [
        st.builds(
            Refused,
            billing_id=st.sampled_from(["sub_123", "=1+1", "cus_", "cus_a-b", "-5", "@x"]),
            reason=st.just("billing id"),
            email=emails,
            name=names,
        ),
        st.builds(
            Refused,
            billing_id=st.just("cus_" + "9" * 300),
            reason=st.just("billing id is 304 characters"),
            email=emails,
            name=names,
        ),
        st.builds(
            Refused,
            billing_id=st.just(""),
            reason=st.just("no billing id"),
            email=emails,
            name=names,
        ),
        st.builds(
            Refused,
            email=st.sampled_from(["not-an-email", "a@b", "a@@x.co", "a b@x.co", "@x.co", "'=x"]),
            reason=st.just("is not an email address"),
            billing_id=billing_ids,
            name=names,
        ),
        st.builds(
            Refused,
            email=st.just("e" * 321 + "@x.co"),
            reason=st.just("email is 326 characters"),
            billing_id=billing_ids,
            name=names,
        ),
        st.builds(
            Refused,
            email=st.just(""),
            reason=st.just("no email and no userId"),
            billing_id=billing_ids,
            name=names,
        ),
        st.builds(
            Refused,
            name=names.map(lambda n: n[:10] + "\x00" + n[10:]),
            reason=st.just("NUL character"),
            billing_id=billing_ids,
            email=emails,
        ),
        st.builds(
            Refused, surplus=st.just("surplus"), reason=st.just("fields; the header has"), **valid
        ),
    ]
    if generic:
        kinds.append(
            st.builds(
                Refused,
                user_id=st.just("u" * 256),
                email=st.just(""),
                reason=st.just("userId is 256 characters"),
                billing_id=billing_ids,
                name=names,
            )
        )
    return st.one_of(kinds)


@st.composite
def csv_cases(draw: st.DrawFn) -> CsvCase:
    generic = draw(st.booleans())
    customer = st.builds(
        Customer,
        billing_id=billing_ids,
        # With a userId column a row may find its user by userId alone.
        email=st.one_of(emails, st.just("")) if generic else emails,
        name=names,
        user_id=st.one_of(st.just(""), user_ids) if generic else st.just(""),
        as_text=st.booleans(),
        padded=st.booleans(),
        repeated=st.booleans(),
    ).filter(lambda c: bool(c.email or c.user_id))
    customers = draw(
        st.lists(
            customer,
            max_size=6,
            # One row per user: a later row for the same user would change what an earlier
            # one set, which is its own test.
            unique_by=(
                lambda c: c.email.lower() or f"userId {c.user_id}",
                lambda c: c.user_id or f"email {c.email.lower()}",
            ),
        )
    )
    refused = draw(st.lists(refused_rows(generic), max_size=5))
    nothing = draw(st.lists(st.sampled_from(["", "   ", ",,,", ", ,", '"",""']), max_size=2))
    pool: list[Line] = [*customers, *refused, *(Nothing(n) for n in nothing)]
    lines = draw(st.permutations(pool))
    return CsvCase(
        lines=tuple(lines),
        generic=generic,
        extra_columns=tuple(
            draw(
                st.lists(
                    st.sampled_from(["Description", "Created (UTC)", "=HYPERLINK(1)", "Notes"]),
                    unique=True,
                    max_size=2,
                )
            )
        ),
        extra_value=draw(st.one_of(st.sampled_from(HOSTILE), text, huge)),
        newline=draw(st.sampled_from(["\r\n", "\n", "\r"])),
        quote_all=draw(st.booleans()),
        encoding=draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom"])),
        broken_end=draw(st.booleans()),
    )


# Writing a case as a file, and what importing it must do -----------------------------------------


def starts_with_text_mark(value: str) -> bool:
    return TEXT_MARK.match(value) is not None


def cell_for(value: str, written_as_text: bool) -> str:
    """A value as a cell that reads back as it. Written plainly, a value that starts with a
    quote before a formula character would lose that quote, and one that starts with a tab or
    carriage return would lose it to the trimming: those are always written as text."""
    plain_loses = starts_with_text_mark(value) or value.startswith(("\t", "\r"))
    return as_text(value) if written_as_text or plain_loses else value


def quoted(cell: str, quote_all: bool) -> str:
    if quote_all or any(c in cell for c in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


@dataclass
class Rendered:
    data: bytes
    customers: dict[int, Customer]  # line -> row (both lines of a repeated row)
    refused: dict[int, str]  # line -> a word the reason must hold
    has_rows: bool


def render(case: CsvCase) -> Rendered:
    mapped = ["billing_id", "email", "name", "user_id"] if case.generic else ["id", "Email", "Name"]
    columns = [*mapped, *case.extra_columns]
    records: list[tuple[Line | None, str]] = []
    for item in case.lines:
        if isinstance(item, Nothing):
            records.append((item, item.line))
            continue
        if isinstance(item, Customer):
            pad = " " if item.padded else ""
            cells = [
                pad + cell_for(item.billing_id, item.as_text) + pad,
                pad + cell_for(item.email, item.as_text) + pad,
                cell_for(item.name, item.as_text),
                cell_for(item.user_id, item.as_text),
            ]
            surplus = []
        else:
            cells = [item.billing_id, item.email, item.name, item.user_id]
            surplus = [item.surplus] if item.surplus else []
        extra = "n" if records else case.extra_value
        row = [*cells[: len(mapped)], *(extra for _ in case.extra_columns), *surplus]
        record = ",".join(quoted(cell, case.quote_all) for cell in row)
        records.append((item, record))
        if isinstance(item, Customer) and item.repeated:
            records.append((item, record))
    if case.broken_end:
        records.append((None, 'cus_Broken,broken@x.co,"never closed'))

    text = ",".join(quoted(c, case.quote_all) for c in columns) + case.newline
    line = 1 + len(LINE_BREAK.findall(text))
    customers: dict[int, Customer] = {}
    refused: dict[int, str] = {}
    for written, record in records:
        if isinstance(written, Customer):
            customers[line] = written
        elif isinstance(written, Refused):
            refused[line] = written.reason
        elif written is None:
            refused[line] = "never closed"
        chunk = record + case.newline
        text += chunk
        line += len(LINE_BREAK.findall(chunk))
    if case.encoding == "utf-16-be-bom":
        data = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    else:
        data = text.encode(case.encoding)
    has_rows = any(r.strip() for _, r in records)
    return Rendered(data=data, customers=customers, refused=refused, has_rows=has_rows)


def stored_name(cell: str) -> str:
    """What the import keeps of a name cell: its surrounding whitespace trimmed, one quote read
    off a cell written as text, at most the column's 255 characters."""
    value = cell.strip()
    return (value[1:] if starts_with_text_mark(value) else value)[:NAME_CHARS]


def check_imported(case: CsvCase, result: Imported) -> None:
    rendered = render(case)
    if not rendered.has_rows:
        assert result.refusal == "customers.csv: the file has no rows after its header line."
        assert not Profile.objects.exists()
        return
    assert result.refusal == ""
    # Every refused row is listed with its line number and a reason naming the problem, in the
    # preview and in the job's report; no valid row is among them.
    assert set(result.refused) == set(rendered.refused), (result.refused, rendered.refused)
    for line, word in rendered.refused.items():
        assert word in result.refused[line], (line, result.refused[line])
    assert result.preview is not None
    assert {line for line, _ in result.preview.failed} == set(rendered.refused)
    # Every valid row is imported, and nothing else.
    customers = set(rendered.customers.values())
    assert result.counters["created"] == len(customers)
    assert Profile.objects.count() == len(customers)
    for item in customers:
        if item.user_id:
            profile = Profile.objects.get(user_id=item.user_id)
        else:
            profile = Profile.objects.get(email=item.email.lower())
        assert profile.billing_id == item.billing_id
        assert profile.email == (item.email.lower() or None)
        assert profile.name == stored_name(cell_for(item.name, item.as_text))


FINDINGS = CsvCase(
    lines=(
        Customer("cus_A1", "a@x.co", "=SUM(1,1)"),
        Customer("cus_B2", "b@x.co", "@x"),
        Customer("cus_C3", "c@x.co", ""),
        Customer("cus_D4", "d@x.co", "z" * 200_000),
        Customer("cus_E5", "=1+5@example.com", "Eve"),
        Customer("cus_F6", "f@x.co", "After the long one"),
    )
)


@PER_EXAMPLE_STATE
@given(case=csv_cases())
@example(case=FINDINGS)
@example(case=replace(FINDINGS, newline="\r", quote_all=True, encoding="utf-16"))
@example(case=replace(FINDINGS, lines=FINDINGS.lines[3:], broken_end=True, newline="\n"))
@example(
    case=CsvCase(
        lines=(
            Customer("cus_1", "'=a@x.co", "''=x", as_text=True, repeated=True),
            Refused("cus_2", "b@x.co", "two\nlines\x00", reason="NUL character"),
            Nothing(",,,"),
            Customer("cus_3", "c@x.co", "\tTab", user_id="\t=u3", as_text=True),
        ),
        generic=True,
        extra_columns=("Notes",),
        extra_value="y" * 131_073,
    )
)
@example(case=CsvCase(lines=(Nothing(""), Nothing("   "))))
def test_every_valid_row_is_imported_and_every_refused_row_is_listed(
    operator_client: Client, case: CsvCase
) -> None:
    with rolled_back():
        result = import_file(operator_client, render(case).data)
        check_imported(case, result)


def corruptions() -> st.SearchStrategy[tuple[str, int, bytes]]:
    """How a file ends up in another encoding: UTF-16 without the mark that says so, or bytes
    no UTF-8 (or UTF-16) text has, at some place in the file."""
    return st.one_of(
        st.tuples(st.sampled_from(["utf-16-le", "utf-16-be"]), st.just(0), st.just(b"")),
        st.tuples(
            st.just("insert"),
            st.integers(min_value=1, max_value=10_000),
            st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\xc1", b"\x80", b"\xf8"]),
        ),
    )


@PER_EXAMPLE_STATE
@given(case=csv_cases(), corruption=corruptions())
@example(
    case=CsvCase(lines=(Customer("cus_1", "a@x.co", "Ann"),)), corruption=("utf-16-le", 0, b"")
)
@example(
    case=CsvCase(lines=(Customer("cus_1", "a@x.co", "Ann"), Customer("cus_2", "b@x.co", "B"))),
    corruption=("insert", 30, b"\xff"),
)
def test_a_file_in_another_encoding_is_refused_whole(
    operator_client: Client, case: CsvCase, corruption: tuple[str, int, bytes]
) -> None:
    how, place, inserted = corruption
    if how == "insert":
        data = render(case).data
        place = min(place, len(data))
        data = data[:place] + inserted + data[place:]
    else:
        data = render(replace(case, encoding="utf-8")).data.decode().encode(how)
    with rolled_back():
        result = import_file(operator_client, data)
        assert result.refusal.startswith("customers.csv: the ")
        assert "UTF-16" in result.refusal or "not UTF-8" in result.refusal, result.refusal
        assert result.refusal.endswith("save it as CSV UTF-8 and upload it again.")
        assert not Profile.objects.exists()
        assert not Upload.objects.exists() and not Job.objects.exists()


# The export ---------------------------------------------------------------------------------------

formula_like = st.builds(
    lambda prefix, body: prefix + body,
    st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'=", "''@", "'", ""]),
    st.text(string.ascii_letters + string.digits + "=+-@(),;:!|' \"", min_size=1, max_size=20)
    .map(str.strip)
    .filter(bool),
)


@given(value=st.one_of(formula_like, text))
def test_a_cell_written_as_text_reads_back_as_the_value(value: str) -> None:
    cell = as_text(value)
    assert not cell.startswith(FORMULA_STARTS)
    assert from_text(cell) == value
    assert cell in (value, "'" + value)


@PER_EXAMPLE_STATE
@given(
    users=st.lists(
        st.tuples(formula_like, emails, formula_like, st.sampled_from(["", "-2+3", "=cus_1"])),
        min_size=1,
        max_size=5,
        unique_by=lambda u: u[0],
    )
)
@example(
    users=[
        ("=cmd|' /C calc'!A0", "=1+5@example.com", "@SUM(1+1)", ""),
        ("'=quoted", "'=a@x.co", "''@twice", "-2+3"),
        ("\t=tab", "+b@x.co", "\r=cr", "=cus_1"),
    ]
)
def test_the_export_runs_no_formula_and_imports_back_as_it_was(
    operator_client: Client, post_ingest: Any, users: list[tuple[str, str, str, str]]
) -> None:
    batch = [
        {
            "type": "identify",
            "userId": user_id,
            "traits": {"email": email, "name": name, **({"billingId": bad} if bad else {})},
        }
        for user_id, email, name, bad in users
    ]
    with rolled_back():
        response = post_ingest("batch", {"batch": batch})
        assert response.status_code == 200 and response.json()["failed"] == []
        export = operator_client.get(reverse("conflicts-export"))
        assert isinstance(export, StreamingHttpResponse) and export.status_code == 200
        rows = list(csv_rows(b"".join(export.streaming_content).decode()))
        # No cell starts as a spreadsheet formula would.
        assert not [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]
        by_pk = {p.pk: p for p in Profile.objects.all()}
        assert len(rows) == 1 + len(users)
        for row in rows[1:]:
            profile = by_pk[int(row[0])]
            read = [from_text(cell) for cell in row[1:5]]
            assert read == [profile.user_id, profile.email, profile.name, profile.billing_id or ""]

        # The file with its billing ids filled in, imported back: each user gets its own.
        filled = [rows[0], *([*row[:4], f"cus_RT{row[0]}", row[5]] for row in rows[1:])]
        result = import_file(operator_client, csv_text(filled).encode(), name="filled.csv")
        assert result.refused == {}
        assert {p.pk: p.billing_id for p in Profile.objects.all()} == {
            pk: f"cus_RT{pk}" for pk in by_pk
        }


def csv_rows(data: str) -> Iterator[list[str]]:
    return csv.reader(io.StringIO(data, newline=""))


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()

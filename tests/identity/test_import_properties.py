"""Properties of the billing-customer CSV import, checked with generated files through the
dashboard as an operator uses it (upload, preview, Import, the job):

- no step answers with a server error, and a refusal says what is wrong;
- every valid row is imported (the database is read back), every refused row is listed with its
  line number and a reason naming the problem, and nothing else is made;
- a file in another encoding is refused whole.

Each example runs in a transaction that is rolled back, so examples do not see each other's
users (the fixtures' operator and source stay).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, replace

import pytest
from django.test import Client
from hypothesis import example, given
from hypothesis import strategies as st

from destinations.models import Job, Profile, Upload
from destinations.people.csv_cells import as_text
from tests.helpers.import_cases import (
    PER_EXAMPLE_STATE,
    CsvCase,
    Customer,
    Line,
    Nothing,
    Refused,
    csv_cases,
    rolled_back,
)
from tests.helpers.import_flow import Imported, import_file

pytestmark = pytest.mark.django_db

NAME_CHARS = 255  # Profile.name's column
# A quote before a formula character marks a cell written as text (ADR 0020).
TEXT_MARK = re.compile(r"'+[=+\-@\t\r]")
LINE_BREAK = re.compile(r"\r\n|\r|\n")


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
    staff_client: Client, case: CsvCase
) -> None:
    with rolled_back():
        result = import_file(staff_client, render(case).data)
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
    staff_client: Client, case: CsvCase, corruption: tuple[str, int, bytes]
) -> None:
    how, place, inserted = corruption
    if how == "insert":
        data = render(case).data
        place = min(place, len(data))
        data = data[:place] + inserted + data[place:]
    else:
        data = render(replace(case, encoding="utf-8")).data.decode().encode(how)
    with rolled_back():
        result = import_file(staff_client, data)
        assert result.refusal.startswith("customers.csv: the ")
        assert "UTF-16" in result.refusal or "not UTF-8" in result.refusal, result.refusal
        assert result.refusal.endswith("save it as CSV UTF-8 and upload it again.")
        assert not Profile.objects.exists()
        assert not Upload.objects.exists() and not Job.objects.exists()

"""Billing-customer CSV files as they come from spreadsheets, other tools and attackers, through
the dashboard's import: every valid row is imported, every refused row is listed with its line
number and reason, and a file in the wrong encoding is refused whole (ADR 0020). The conflicts
export writes formula-like cells as text, and the import reads them back."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from dashboard import import_uploads
from destinations.models import Job, Profile, Upload
from tests.helpers.conflicts import NOT_A_CUSTOMER
from tests.helpers.import_flow import import_file
from tests.helpers.ingest import IngestPost
from tests.helpers.pages import streamed_text

pytestmark = pytest.mark.django_db
SAVE_AS = "save it as CSV UTF-8 and upload it again"


def written(rows: list[list[str]], header: str = "id,Email,Name") -> bytes:
    """A file as Python's csv module (and most tools) write it: CRLF, fields quoted as needed."""
    buffer = io.StringIO()
    buffer.write(header + "\r\n")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def users() -> dict[str, tuple[str | None, str]]:
    """email -> (billing id, name) of every profile."""
    return {str(p.email): (p.billing_id, p.name) for p in Profile.objects.all()}


def test_rows_with_formula_like_blank_or_huge_names_are_all_imported(staff_client: Client) -> None:
    # The rows of the generated files whose valid customers were lost: a name over the csv
    # module's 131,072-character field limit stopped the reader, and every row after it.
    huge = "x" * 200_000
    data = written(
        [
            ["cus_A1", "a@x.co", "=SUM(1,1)"],
            ["cus_B2", "b@x.co", "@x"],
            ["cus_C3", "c@x.co", ""],
            ["cus_D4", "d@x.co", huge],
            ["cus_E5", "=1+5@example.com", "Eve"],
            ["cus_F6", "f@x.co", "After the long one"],
        ]
    )
    result = import_file(staff_client, data)
    assert result.refusal == "" and result.refused == {}
    assert result.counters["created"] == 6
    assert users() == {
        "a@x.co": ("cus_A1", "=SUM(1,1)"),
        "b@x.co": ("cus_B2", "@x"),
        "c@x.co": ("cus_C3", ""),
        "d@x.co": ("cus_D4", "x" * 255),  # cut to the column, as ingest cuts a trait name
        "=1+5@example.com": ("cus_E5", "Eve"),
        "f@x.co": ("cus_F6", "After the long one"),
    }


def test_a_line_longer_than_the_field_limit_in_an_unused_column_costs_nothing(
    staff_client: Client,
) -> None:
    data = written(
        [["cus_1", "", "a@x.co", "Ann", "y" * 150_000], ["cus_2", "", "b@x.co", "Bob", ""]],
        header="id,Description,Email,Name,Notes",
    )
    result = import_file(staff_client, data)
    assert result.refused == {} and result.counters["created"] == 2


def test_cells_the_export_wrote_as_text_are_read_back_as_they_were(staff_client: Client) -> None:
    data = written(
        [
            ["cus_1", "'=1+5@example.com", "'=SUM(1,1)"],
            ["cus_2", "b@x.co", "''=x"],  # a name that itself starts with a quote
            ["cus_3", "c@x.co", "'-5"],
            ["cus_4", "d@x.co", "'plain"],  # no formula after the quote: kept as it is
            ["'=cus_5", "e@x.co", "E"],  # a billing id is read back too, then checked
        ]
    )
    result = import_file(staff_client, data)
    assert users() == {
        "=1+5@example.com": ("cus_1", "=SUM(1,1)"),
        "b@x.co": ("cus_2", "'=x"),
        "c@x.co": ("cus_3", "-5"),
        "d@x.co": ("cus_4", "'plain"),
    }
    assert result.refused == {6: f"billing id '=cus_5' {NOT_A_CUSTOMER}"}


@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
def test_line_numbers_are_the_files_whatever_its_line_endings(
    staff_client: Client, newline: str
) -> None:
    lines = [
        "id,Email,Name",
        'sub_1,a@x.co,"Two',  # a quoted name over two lines: the row is on line 2
        'lines"',
        "",  # a blank line counts as a line, and is no row
        "cus_2,b@x.co,Bob",
        ",,",  # nothing in it: skipped, not refused
        "cus_3,not-an-email,Cy",
        '"cus_4","d@x.co","Di ""the"" quoted"',
    ]
    data = newline.join(lines).encode() + newline.encode()
    result = import_file(staff_client, data)
    assert result.refusal == ""
    assert result.refused == {
        2: f"billing id 'sub_1' {NOT_A_CUSTOMER}",
        7: "'not-an-email' is not an email address",
    }
    assert users() == {"b@x.co": ("cus_2", "Bob"), "d@x.co": ("cus_4", 'Di "the" quoted')}
    assert result.preview is not None
    assert [line for line, _ in result.preview.failed] == [2, 7]


def test_a_row_with_broken_quoting_is_refused_and_reading_resumes_after_it(
    staff_client: Client,
) -> None:
    data = (
        b"id,Email,Name\n"
        b'cus_1,"a@x.co,Ann\n'  # never closed
        b"cus_2,b@x.co,Bob\n"
        b'cus_3,c@x.co,"Cy"d\n'  # text after the closing quote
        b"cus_4,d@x.co,Di\n"
        b'cus_5,e@x.co,"open\n'  # never closed, at the end
    )
    result = import_file(staff_client, data)
    assert result.refused == {
        2: "a quoted field starts on this line and, 2 lines further, has text after its "
        "closing quote",
        4: 'a closing quote (") must be followed by a comma or the end of the line',
        6: "a quoted field starts on this line and is never closed",
    }
    assert users() == {"b@x.co": ("cus_2", "Bob"), "d@x.co": ("cus_4", "Di")}


GOOD = "id,Email,Name\r\ncus_1,ann@x.co,Ann Ümlaut\r\ncus_2,bob@x.co,Bob\r\n"


def test_utf16_with_its_byte_order_mark_is_read(staff_client: Client) -> None:
    result = import_file(staff_client, GOOD.encode("utf-16"))  # what Excel's Unicode save has
    assert result.refused == {}
    assert users() == {"ann@x.co": ("cus_1", "Ann Ümlaut"), "bob@x.co": ("cus_2", "Bob")}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            GOOD.encode("utf-16-le"),
            f"the file looks like UTF-16 without a byte order mark to say so; {SAVE_AS}",
        ),
        (
            GOOD.replace("\r\n", "\n").encode("utf-16-be"),
            f"the file looks like UTF-16 without a byte order mark to say so; {SAVE_AS}",
        ),
        (GOOD.encode("utf-32"), f"the file is UTF-32; {SAVE_AS}"),
        (
            GOOD.encode("latin-1"),  # the Ü on line 2
            f"the file is not UTF-8 (byte 0xdc on line 2, at position 34); {SAVE_AS}",
        ),
        (
            "id,Email,Name\r\ncus_1,ann@x.co,Ann\r\n".encode("utf-16") + b"=",  # half a character
            f"the file is not UTF-16 (byte 0x3d on line 3, at position 72); {SAVE_AS}",
        ),
        (
            b"id,E\x00mail,Name\ncus_1,a@x.co,A\n",
            f"the header line holds a NUL character; {SAVE_AS}",
        ),
        (b"id,Email,Name\r\n", "the file has no rows after its header line"),
        (b"id,Email,Name\n\n\n", "the file has no rows after its header line"),
        (
            b'id,"Email,Name\ncus_1,a@x.co,A\n',
            "the header line is not valid CSV: a quoted field starts on this line and is never "
            "closed",
        ),
    ],
    ids=[
        "utf16-le-no-bom",
        "utf16-be-no-bom",
        "utf32",
        "latin1",
        "utf16-truncated",
        "nul-in-header",
        "header-only",
        "header-and-blank-lines",
        "broken-header",
    ],
)
def test_a_file_that_cannot_be_read_is_refused_whole_with_the_reason(
    staff_client: Client, data: bytes, reason: str
) -> None:
    result = import_file(staff_client, data, name="bad.csv")
    assert result.refusal == f"bad.csv: {reason}."
    assert not Profile.objects.exists() and not Upload.objects.exists()
    assert not Job.objects.exists()


def test_nul_characters_and_overlong_values_refuse_their_row_only(staff_client: Client) -> None:
    header = "billing_id,email,name,user_id"
    data = written(
        [
            ["cus_1", "a@x.co", "Nul\x00name", ""],
            ["cus_2", "b\x00@x.co", "B", ""],
            ["cus_3", "c" * 320 + "@x.co", "C", ""],
            ["cus_" + "4" * 300, "d@x.co", "D", ""],
            ["cus_5", "", "E", "u" * 256],
            ["cus_6", "f@x.co", "Kept", ""],
            ["cus_7", "", "By userId", "u-7"],
        ],
        header=header,
    )
    result = import_file(staff_client, data)
    assert result.refused == {
        2: "a field holds a NUL character, which cannot be stored",
        3: "a field holds a NUL character, which cannot be stored",
        4: "email is 325 characters; at most 320",
        5: "billing id is 304 characters; at most 255",
        6: "userId is 256 characters; at most 255",
    }
    assert sorted((p.billing_id, p.email, p.user_id) for p in Profile.objects.all()) == [
        ("cus_6", "f@x.co", None),
        ("cus_7", None, "u-7"),
    ]


def test_duplicate_rows_unknown_columns_and_trailing_empty_fields(staff_client: Client) -> None:
    data = written(
        [
            ["cus_1", "", "a@x.co", "Ann", "=1+1", "2024-01-01"],
            ["cus_1", "", "a@x.co", "Ann", "=1+1", "2024-01-01"],  # the same row again
            ["cus_2", "", "b@x.co", "Bob", "", "2024-01-02", "", ""],  # trailing commas
            ["cus_3", "", "c@x.co", "Cy", "", "2024-01-03", "surplus"],
        ],
        header='id,Description,Email,Name,"=HYPERLINK(""http://x"")",Created (UTC)',
    )
    result = import_file(staff_client, data)
    assert result.refused == {5: "has 7 fields; the header has 6"}
    assert (result.counters["created"], result.counters["unchanged"]) == (2, 1)
    assert users() == {"a@x.co": ("cus_1", "Ann"), "b@x.co": ("cus_2", "Bob")}


def test_a_mapped_column_whose_name_appears_twice_is_refused(staff_client: Client) -> None:
    data = written([["cus_1", "a@x.co", "Ann", "b@x.co"]], header="id,Email,Name,Email")
    result = import_file(staff_client, data, mapping={"billing_id": "id", "email": "Email"})
    assert result.refusal == "two columns are named 'Email': rename one"
    assert not Profile.objects.exists()


def test_importing_a_staged_file_that_cannot_be_read_says_so(staff_client: Client) -> None:
    token = import_uploads.stage_upload(name="old.csv", data=b"")
    response = staff_client.post(
        reverse("conflicts-import-start"), {"upload": token, "billing_id": "id"}, follow=True
    )
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == ["old.csv: the file is empty."]
    assert not Job.objects.exists()


# The export, edit, re-import loop ---------------------------------------------------------------

FORMULA_USERS: list[dict[str, Any]] = [
    {"userId": "=cmd|' /C calc'!A0", "traits": {"email": "=1+5@example.com", "name": "@SUM(1+1)"}},
    {"userId": "+u2", "traits": {"email": "-two@x.co", "name": "-Minus", "billingId": "-2+3"}},
    {"userId": "\t=u3", "traits": {"email": "three@x.co", "name": "'=quoted"}},
    {"userId": "u4", "traits": {"email": "four@x.co", "name": "Ada"}},
]


def test_the_export_writes_formula_like_cells_as_text_and_they_import_back(
    staff_client: Client, post_ingest: IngestPost
) -> None:
    batch = [{"type": "identify", **user} for user in FORMULA_USERS]
    assert post_ingest("batch", {"batch": batch}).json()["failed"] == []
    export = staff_client.get(reverse("conflicts-export"))
    text = streamed_text(export)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["profile_id", "user_id", "email", "name", "billing_id", "conflict"]
    cells = {tuple(row[1:5]) for row in rows[1:]}
    assert cells == {
        ("'=cmd|' /C calc'!A0", "'=1+5@example.com", "'@SUM(1+1)", ""),
        ("'+u2", "'-two@x.co", "'-Minus", "'-2+3"),
        ("'\t=u3", "three@x.co", "''=quoted", ""),
        ("u4", "four@x.co", "Ada", ""),
    }
    # No cell starts as a formula would in a spreadsheet.
    assert not [cell for row in rows for cell in row if cell[:1] in ("=", "+", "-", "@", "\t")]

    # Fill in the billing ids, keep every other cell as exported, and import the file back.
    filled = io.StringIO()
    writer = csv.writer(filled)
    writer.writerow(rows[0])
    billing_ids = {}
    for n, row in enumerate(rows[1:], start=1):
        writer.writerow([*row[:4], f"cus_RT{n}", row[5]])
        billing_ids[int(row[0])] = f"cus_RT{n}"
    result = import_file(staff_client, filled.getvalue().encode(), name="filled.csv")
    assert result.refused == {}
    assert result.counters["updated"] == len(FORMULA_USERS)
    # Each row found its user by userId: no user was made, and each got its row's billing id.
    assert {p.pk: p.billing_id for p in Profile.objects.all()} == billing_ids
    assert {p.user_id for p in Profile.objects.all()} == {u["userId"] for u in FORMULA_USERS}

"""Properties of the conflicts export, with generated users: it writes no cell a spreadsheet
would run, a cell written as text reads back as its value, and the file imported back means
what it said. Each example runs in a transaction that is rolled back."""

from __future__ import annotations

import csv
import io
import string
from collections.abc import Iterator

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from hypothesis import example, given
from hypothesis import strategies as st

from destinations.models import Profile
from destinations.people.csv_cells import FORMULA_STARTS, as_text, from_text
from tests.helpers.import_cases import PER_EXAMPLE_STATE, emails, rolled_back, text
from tests.helpers.import_flow import import_file
from tests.helpers.ingest import IngestPost

pytestmark = pytest.mark.django_db


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
    staff_client: Client, post_ingest: IngestPost, users: list[tuple[str, str, str, str]]
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
        export = staff_client.get(reverse("conflicts-export"))
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
        result = import_file(staff_client, csv_text(filled).encode(), name="filled.csv")
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

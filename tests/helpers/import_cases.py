"""What generated CSV files hold (valid customers, rows the import must refuse, lines without
data), as Hypothesis strategies, and the per-example rollback the property tests share."""

from __future__ import annotations

import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Function-scoped fixtures (the logged-in client, the ingest source) are made once for all of a
# test's examples; each example rolls its own writes back (``rolled_back``).
PER_EXAMPLE_STATE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@contextmanager
def rolled_back() -> Iterator[None]:
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


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

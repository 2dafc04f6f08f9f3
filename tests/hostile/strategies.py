"""Hypothesis strategies for what arrives at Switchboard's entry points: Segment messages and
batches, Refiner webhook bodies, and values for dashboard query strings, valid and hostile."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import strategies as st

from tests.helpers.refusals import nested

_ids = itertools.count()


def unique_id(prefix: str) -> str:
    """A message id no other example uses: examples share one test database."""
    return f"{prefix}-{next(_ids)}"


# Text that PostgreSQL and SQLite can both hold is not assumed: NUL, lone surrogates are not
# valid in JSON from orjson, but escapes of them are text to a lenient parser.
any_text = st.text(max_size=40)
odd_text = st.one_of(
    any_text,
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "\\u0000",
            "\\ud800",
            "=SUM(1,1)",
            "@x",
            "\u202e",
            "x" * 300,
            "😀" * 70,
            "null",
        ]
    ),
)
huge_numbers = st.sampled_from(
    [2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 1e308, -1e308, 5e-324, 0.1]
)
numbers = st.one_of(
    st.integers(-(2**63), 2**64 - 1), huge_numbers, st.floats(allow_nan=False, allow_infinity=False)
)

json_leaf = st.one_of(st.none(), st.booleans(), numbers, odd_text)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    return st.recursive(
        json_leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(odd_text, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


deep_values = st.integers(1, 300).map(nested)
objects = st.one_of(st.dictionaries(odd_text, json_values(), max_size=5), deep_values)

timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-12:00",
            "0001-01-01T00:00:00+14:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999+00:00",
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00+24:00",
            "not a date",
            "",
            "2024-01-01",
        ]
    ),
    numbers,
)
ids = st.one_of(st.none(), odd_text, st.integers(), huge_numbers, st.booleans(), st.just({}))
call_types = st.one_of(
    st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]),
    st.sampled_from(["", "Track", "batch", "x" * 100]),
    json_leaf,
)

# Field -> values: each message takes a random subset, so most are missing most fields.
MESSAGE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "userId": ids,
    "anonymousId": ids,
    "groupId": ids,
    "previousId": ids,
    "event": st.one_of(odd_text, json_leaf),
    "name": st.one_of(odd_text, json_leaf),
    "category": odd_text,
    "properties": st.one_of(objects, json_leaf),
    "traits": st.one_of(objects, json_leaf),
    "context": st.one_of(objects, json_leaf),
    "integrations": st.one_of(objects, json_leaf),
    "timestamp": timestamps,
    "originalTimestamp": timestamps,
    "sentAt": timestamps,
}


@st.composite
def messages(draw: st.DrawFn, *, typed: bool = True) -> dict[str, Any]:
    """One Segment message, usually near valid, with a unique string messageId (so what was
    stored can be matched to what was sent)."""
    message: dict[str, Any] = {"messageId": unique_id("hyp")}
    if typed:
        message["type"] = draw(call_types)
    # A realistic core most of the time, so the valid path is exercised too.
    if draw(st.booleans()):
        message["userId"] = "u-" + draw(st.text("abc", min_size=1, max_size=3))
        message["event"] = "Clicked"
        message["groupId"] = "g-1"
        message["previousId"] = "p-1"
    for name in draw(st.sets(st.sampled_from(sorted(MESSAGE_FIELDS)), max_size=5)):
        message[name] = draw(MESSAGE_FIELDS[name])
    return message


@st.composite
def batches(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {"batch": draw(st.lists(messages(), min_size=1, max_size=6))}
    if draw(st.booleans()):
        document["context"] = draw(st.one_of(objects, json_leaf))
    if draw(st.booleans()):
        document["sentAt"] = draw(timestamps)
    if draw(st.booleans()):
        document["integrations"] = draw(st.one_of(objects, json_leaf))
    return document


authorization_headers = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=255), max_size=30),
    st.sampled_from(["Basic \xff", "Basic", "Basic ====", "Bearer x", "Basic " + "A" * 2000]),
    st.binary(max_size=30).map(lambda raw: "Basic " + raw.decode("latin-1")),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/json; charset=utf-16", "", "text/html", "x/y"]
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"[]",
            b"null",
            b'{"batch": 1}',
            b"\xff\xfe{\x00}\x00",
            b'{"userId": "u", "event": "\\ud800"}',
            b'{"a": 1e400}',
            b"[" * 5000 + b"]" * 5000,
            b'{"userId": "u", "event": "E", "properties": {"n": 123456789012345678901234567890}}',
        ]
    ),
)

refiner_triggers = st.one_of(
    st.sampled_from(["Survey Completed", "Saw Survey", "Dismissed Survey", "Entered Segment"]),
    json_leaf,
)


@st.composite
def refiner_bodies(draw: st.DrawFn) -> Any:
    """What a Refiner webhook might post, from well formed to anything JSON can say."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values())
    body: dict[str, Any] = {
        "triggered_event": draw(refiner_triggers),
        "remote_id": draw(st.one_of(ids, st.just("r-1"))),
        "email": draw(st.one_of(st.none(), st.just("a@example.com"), odd_text, json_leaf)),
        "uuid": draw(st.one_of(st.just(unique_id("contact")), json_leaf)),
        "response": {"uuid": unique_id("response"), "data": draw(st.one_of(objects, json_leaf))},
        "form": draw(st.one_of(st.just({"uuid": "f-1", "name": "NPS"}), objects, json_leaf)),
    }
    for name in ("attributes", "account", "segments", "response"):
        if draw(st.booleans()):
            body[name] = draw(
                st.one_of(
                    objects,
                    json_leaf,
                    st.lists(json_values(4), max_size=3),
                    st.fixed_dictionaries({"refiner_answers": json_values(4)}),
                    st.fixed_dictionaries({"segments": json_values(4)}),
                )
            )
    return body


query_values = st.one_of(
    odd_text,
    st.sampled_from(
        [
            "9223372036854775808",
            "999999999999999999999999999999",
            "-1",
            "0",
            "1e9",
            "NaN",
            "%",
            "\\ud800",
            "2024-13-45",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-12:00",
            ",,,",
            "1,2,x",
            "' OR 1=1 --",
        ]
    ),
    st.integers().map(str),
)


# The ingest paths, short ones included, and what a whole hostile request to one is made of:
# ``@given(**hostile_requests)``.
INGEST_PATHS = [
    "batch",
    "import",
    "track",
    "identify",
    "page",
    "screen",
    "group",
    "alias",
    "t",
    "p",
]
ingest_paths = st.sampled_from(INGEST_PATHS)
content_encodings = st.sampled_from(["", "gzip", "br", "GZIP", "identity, gzip", "\xff"])
hostile_requests: dict[str, st.SearchStrategy[Any]] = {
    "authorization": authorization_headers,
    "content_type": content_types,
    "encoding": content_encodings,
    "body": raw_bodies,
    "path": ingest_paths,
}

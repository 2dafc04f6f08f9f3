"""The fake Kana's GraphQL handling: the request and error shapes of what it cannot read,
the requests it records, and the faults it can be told to make. Real HTTP throughout."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from destinations.standins.kana import FakeKana
from tests.helpers.kana_graphql import CREATE_USER, KEY, data, error, gql, record

# --- what the fake cannot read --------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables", "code", "message"),
    [
        (
            "mutation { deleteUser(id: $id) { id } }",
            {"id": "u1"},
            "GRAPHQL_VALIDATION_FAILED",
            'Cannot query field "deleteUser" on type "Mutation".',
        ),
        (
            "query { recordUsage(input: $input) { recorded } }",
            {"input": {}},
            "GRAPHQL_VALIDATION_FAILED",
            'Cannot query field "recordUsage" on type "Query".',
        ),
        (
            CREATE_USER,
            {},
            "BAD_USER_INPUT",
            'Variable "$input" of required type "CreateUserInput!" was not provided.',
        ),
        (
            CREATE_USER,
            {"input": None},
            "BAD_USER_INPUT",
            'Variable "$input" of non-null type "CreateUserInput!" must not be null.',
        ),
        (
            CREATE_USER,
            {"input": {"name": "Ada"}},
            "BAD_USER_INPUT",
            'Variable "$input" got invalid value {"name": "Ada"}; '
            'Field "id" of required type "ID!" was not provided.',
        ),
        (
            CREATE_USER,
            {"input": {"id": "u1", "billingUserId": "cus_A1"}},
            "BAD_USER_INPUT",
            'Variable "$input" got invalid value {"id": "u1", "billingUserId": "cus_A1"}; '
            'Field "billingUserId" is not defined by type "CreateUserInput".',
        ),
        (
            "query { user { id } }",
            {},
            "GRAPHQL_VALIDATION_FAILED",
            'Field "Query.user" argument "id" of type "ID!" is required, but it was not provided.',
        ),
        (
            "query { users(first: $n) { id } }",
            {"n": 1},
            "GRAPHQL_VALIDATION_FAILED",
            'Unknown argument "first" on field "Query.users".',
        ),
        (
            'query { user(id: "u1") { id } }',
            {},
            "GRAPHQL_VALIDATION_FAILED",
            "The fake Kana reads arguments from variables only",
        ),
        (
            "query { users { id } features { id } }",
            {},
            "GRAPHQL_VALIDATION_FAILED",
            "The fake Kana answers exactly one root field per operation",
        ),
        ("users { id }", {}, "GRAPHQL_PARSE_FAILED", "Syntax Error"),
    ],
    ids=[
        "unknown-mutation",
        "mutation-as-query",
        "missing-variable",
        "null-variable",
        "missing-input-field",
        "unknown-input-field",
        "missing-argument",
        "unknown-argument",
        "inline-literal",
        "two-root-fields",
        "no-braces",
    ],
)
def test_operations_the_fake_refuses(
    fake_kana: FakeKana, query: str, variables: dict[str, Any], code: str, message: str
) -> None:
    response = gql(fake_kana, query, variables)
    assert response.status_code == 200
    assert "data" not in response.json()
    assert error(response)[0] == code
    assert error(response)[1].startswith(message)


def test_anonymous_query_alias_and_comments(fake_kana: FakeKana) -> None:
    fake_kana.add_user("u1")
    query = "# who is there\n{ everyone: users { id } }"
    assert data(gql(fake_kana, query)) == {
        "everyone": [{"id": "u1", "name": None, "email": None, "billingId": None, "metadata": None}]
    }
    assert fake_kana.received[-1].operation == "users"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "Invalid JSON body"),
        (b"[]", "The request body must be a JSON object"),
        (b'{"variables": {}}', "GraphQL operations must contain a non-empty `query`."),
        (b'{"query": "{ users { id } }", "variables": [1]}', "`variables` must be a JSON object"),
    ],
)
def test_bad_bodies_are_400_with_a_graphql_error(
    fake_kana: FakeKana, raw: bytes, message: str
) -> None:
    response = requests.post(
        fake_kana.base_url,
        data=raw,
        headers={"Authorization": KEY, "Content-Type": "application/json"},
        timeout=2,
    )
    assert response.status_code == 400
    code, text = error(response)
    assert code == "BAD_REQUEST" and text.startswith(message)


def test_other_paths_and_methods(fake_kana: FakeKana) -> None:
    elsewhere = requests.post(fake_kana.origin + "/v1/users", json={}, timeout=2)
    assert (elsewhere.status_code, error(elsewhere)[0]) == (404, "NOT_FOUND")
    get = requests.get(fake_kana.base_url, headers={"Authorization": KEY}, timeout=2)
    assert (get.status_code, get.headers["Allow"]) == (405, "POST")


# --- recording ------------------------------------------------------------------------------


def test_requests_are_recorded_by_operation(fake_kana: FakeKana) -> None:
    gql(fake_kana, CREATE_USER, {"input": {"id": "u1"}})
    gql(fake_kana, "{ users { id } }")
    [created] = fake_kana.operations_received("createUser")
    assert (created.method, created.path, created.status) == ("POST", "/graphql", 200)
    assert created.variables == {"input": {"id": "u1"}}
    assert created.header("authorization") == KEY
    assert [r.operation for r in fake_kana.received] == ["createUser", "users"]
    fake_kana.clear()
    assert fake_kana.received == []


def test_wait_for_sees_requests_made_from_another_thread(fake_kana: FakeKana) -> None:
    threading.Timer(0.05, gql, args=(fake_kana, "{ users { id } }")).start()
    [request] = fake_kana.wait_for(lambda r: r.status == 200, operation="users")
    assert request.operation == "users"


def test_wait_for_fails_saying_what_arrived(fake_kana: FakeKana) -> None:
    gql(fake_kana, CREATE_USER, {"input": {"id": "u1"}})
    with pytest.raises(AssertionError, match=r'createUser -> 200 .*"id": "u1"'):
        fake_kana.wait_for(1, timeout=0.05, operation="recordUsage")


# --- faults ---------------------------------------------------------------------------------


def test_server_error_for_one_operation_only(fake_kana: FakeKana, ada: str) -> None:
    fault = fake_kana.server_error(times=1, operation="recordUsage")
    assert data(gql(fake_kana, "{ users { id } }"))  # other operations are unaffected
    failed = record(fake_kana, userId=ada, featureId="exports")
    assert (failed.status_code, error(failed)[0]) == (500, "INTERNAL_SERVER_ERROR")
    data(record(fake_kana, userId=ada, featureId="exports"))
    assert fault.hits == 1
    assert [r.fault for r in fake_kana.operations_received("recordUsage")] == ["status 500", None]
    assert fake_kana.usage(ada, "exports") == 1  # the failed attempt recorded nothing


@pytest.mark.parametrize("code", ["INTERNAL_SERVER_ERROR", "RATE_LIMITED", "BAD_USER_INPUT"])
def test_graphql_error_fault_answers_200(fake_kana: FakeKana, ada: str, code: str) -> None:
    fake_kana.graphql_error("Something broke", code, times=1, operation="recordUsage")
    response = record(fake_kana, userId=ada, featureId="exports")
    assert response.status_code == 200
    assert response.json() == {
        "data": None,
        "errors": [{"message": "Something broke", "extensions": {"code": code}}],
    }
    assert fake_kana.operations_received("recordUsage")[0].fault == f"graphql_error {code}"
    assert data(record(fake_kana, userId=ada, featureId="exports"))


def test_faults_queue_in_order_and_clear(fake_kana: FakeKana) -> None:
    fake_kana.rate_limit(retry_after=7, times=1)
    fake_kana.reject_key(times=1)
    fake_kana.server_error(status=503)  # until cleared
    limited, rejected, unavailable = (gql(fake_kana, "{ users { id } }") for _ in range(3))
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "7")
    assert error(limited)[0] == "RATE_LIMITED"
    assert (rejected.status_code, error(rejected)[0]) == (200, "UNAUTHENTICATED")
    assert unavailable.status_code == 503
    fake_kana.clear_faults()
    assert data(gql(fake_kana, "{ users { id } }")) == {"users": []}


def test_hang_outlasts_a_short_client_timeout(fake_kana: FakeKana) -> None:
    fake_kana.hang(seconds=5, times=1, operation="createUser")
    with pytest.raises(requests.exceptions.ReadTimeout):
        gql(fake_kana, CREATE_USER, {"input": {"id": "u1"}}, timeout=0.2)
    assert fake_kana.operations_received("createUser")[0].fault == "hang"
    assert data(gql(fake_kana, "{ users { id } }"))  # the next one is answered


def test_dropped_connection(fake_kana: FakeKana) -> None:
    fake_kana.drop_connection(times=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        gql(fake_kana, "{ users { id } }")
    fake_kana.drop_connection(mid_body=True, times=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        gql(fake_kana, "{ users { id } }")
    assert data(gql(fake_kana, "{ users { id } }")) == {"users": []}


def test_refused_then_resumed_on_the_same_port(fake_kana: FakeKana) -> None:
    session = requests.Session()  # a pooled connection must not sneak past the refusal
    body = {"query": "{ users { id } }"}
    headers = {"Authorization": KEY}
    assert session.post(fake_kana.base_url, json=body, headers=headers, timeout=2).ok
    url = fake_kana.base_url
    fake_kana.refuse_connections()
    with pytest.raises(requests.exceptions.ConnectionError, match=r"(?i)refused"):
        session.post(url, json=body, headers=headers, timeout=2)
    fake_kana.accept_connections()
    assert fake_kana.base_url == url
    assert session.post(url, json=body, headers=headers, timeout=2).ok
    assert len(fake_kana.received) == 2

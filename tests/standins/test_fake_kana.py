"""The fake Kana Admin API behaves like Kana where our tests lean on it: auth, the GraphQL
request and error shapes, users, features, the usage ledger, and faults. Real HTTP throughout."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from destinations.standins.kana import FakeKana, serve_fake_kana

KEY = "prv_test"

CREATE_USER = """
mutation CreateUser($input: CreateUserInput!) {
  createUser(input: $input) { id name email billingId }
}"""
UPDATE_USER = """
mutation UpdateUser($id: ID!, $input: UpdateUserInput!) {
  updateUser(id: $id, input: $input) { id name }
}"""
RECORD_USAGE = """
mutation RecordUsage($input: CreateUsageEventInput!) {
  recordUsage(input: $input) { recorded reason }
}"""
CAN_USE = """
query CanUse($userId: ID!, $featureId: ID!, $delta: Int) {
  canUseFeature(userId: $userId, featureId: $featureId, delta: $delta) {
    access reason consumption { used budget overageEnabled }
  }
}"""
USER = "query User($id: ID!) { user(id: $id) { id name email billingId metadata } }"


@pytest.fixture
def fake_kana() -> Iterator[FakeKana]:
    yield from serve_fake_kana(api_keys={KEY})


def gql(
    kana: FakeKana,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    key: str | None = KEY,
    timeout: float = 2.0,
) -> requests.Response:
    headers = {} if key is None else {"Authorization": key}
    body = {"query": query, "variables": variables or {}}
    return requests.post(kana.base_url, json=body, headers=headers, timeout=timeout)


def data(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    answer = response.json()
    assert "errors" not in answer, answer
    return answer["data"]


def error(response: requests.Response) -> tuple[str, str]:
    """The one error of a GraphQL answer, as (code, message)."""
    [only] = response.json()["errors"]
    return only["extensions"]["code"], only["message"]


def record(kana: FakeKana, **fields: Any) -> requests.Response:
    return gql(kana, RECORD_USAGE, {"input": fields})


@pytest.fixture
def ada(fake_kana: FakeKana) -> str:
    """A user and two features to record usage against."""
    fake_kana.add_user("ada", name="Ada")
    fake_kana.add_feature("exports", "Exports")
    fake_kana.add_feature("sso", "Single sign-on", type="BINARY")
    return "ada"


# --- auth -----------------------------------------------------------------------------------


def test_base_url_is_loopback_graphql(fake_kana: FakeKana) -> None:
    assert fake_kana.base_url == f"http://127.0.0.1:{fake_kana.port}/graphql"


@pytest.mark.parametrize(
    "key", [None, "", "prv_other", f"Bearer {KEY}"], ids=["missing", "empty", "unknown", "bearer"]
)
def test_a_wrong_key_is_unauthorized_with_status_200(fake_kana: FakeKana, key: str | None) -> None:
    response = gql(fake_kana, CREATE_USER, {"input": {"id": "u1"}}, key=key)
    assert response.status_code == 200
    assert response.json() == {
        "errors": [{"message": "Unauthorized", "extensions": {"code": "UNAUTHENTICATED"}}]
    }
    assert fake_kana.users == []


def test_the_bare_key_is_accepted_and_can_be_revoked(fake_kana: FakeKana) -> None:
    assert data(gql(fake_kana, "{ users { id } }")) == {"users": []}
    fake_kana.api_keys.discard(KEY)
    assert error(gql(fake_kana, "{ users { id } }"))[0] == "UNAUTHENTICATED"


def test_unauthorized_status_is_configurable() -> None:
    with FakeKana(unauthorized_status=401) as kana:
        response = gql(kana, "{ users { id } }", key="prv_nope")
        assert (response.status_code, error(response)[0]) == (401, "UNAUTHENTICATED")


# --- users ----------------------------------------------------------------------------------


def test_create_user_then_look_it_up(fake_kana: FakeKana) -> None:
    fields = {"id": "u1", "name": "Ada", "email": "ada@example.com", "billingId": "cus_N1x2"}
    created = data(gql(fake_kana, CREATE_USER, {"input": {**fields, "metadata": {"plan": "pro"}}}))
    assert created == {"createUser": {**fields, "metadata": {"plan": "pro"}}}

    assert data(gql(fake_kana, USER, {"id": "u1"}))["user"]["metadata"] == {"plan": "pro"}
    assert data(gql(fake_kana, USER, {"id": "nobody"})) == {"user": None}
    assert [u["id"] for u in data(gql(fake_kana, "{ users { id } }"))["users"]] == ["u1"]
    user = fake_kana.user("u1")
    assert user is not None and (user.email, user.billing_id) == ("ada@example.com", "cus_N1x2")


def test_create_user_twice_is_a_conflict(fake_kana: FakeKana) -> None:
    data(gql(fake_kana, CREATE_USER, {"input": {"id": "u1", "name": "First"}}))
    response = gql(fake_kana, CREATE_USER, {"input": {"id": "u1", "name": "Second"}})
    assert response.json() == {
        "data": {"createUser": None},
        "errors": [
            {
                "message": "User with id u1 already exists",
                "extensions": {"code": "CONFLICT"},
                "path": ["createUser"],
            }
        ],
    }
    assert [u.name for u in fake_kana.users] == ["First"]


@pytest.mark.parametrize("billing_id", ["cus_NffrFeUfNV2Hib", "AzZTZgSs9sXh71Xo", "169"])
def test_stripe_and_chargebee_customer_ids_are_accepted(
    fake_kana: FakeKana, billing_id: str
) -> None:
    data(gql(fake_kana, CREATE_USER, {"input": {"id": "u1", "billingId": billing_id}}))


@pytest.mark.parametrize("billing_id", ["cus_", "sub_123", "not an id", "x" * 51, ""])
def test_other_billing_ids_are_bad_input(fake_kana: FakeKana, billing_id: str) -> None:
    response = gql(fake_kana, CREATE_USER, {"input": {"id": "u1", "billingId": billing_id}})
    assert error(response) == (
        "BAD_USER_INPUT",
        f'billingId "{billing_id}" is not a Stripe (cus_...) or Chargebee customer id',
    )
    assert fake_kana.users == []


def test_update_user_changes_name_and_metadata(fake_kana: FakeKana) -> None:
    fake_kana.add_user("u1", name="Ada", email="ada@example.com", metadata={"a": 1})
    updated = data(gql(fake_kana, UPDATE_USER, {"id": "u1", "input": {"name": "Ada L."}}))
    assert updated["updateUser"]["name"] == "Ada L."
    data(gql(fake_kana, UPDATE_USER, {"id": "u1", "input": {"metadata": {"b": 2}}}))
    user = fake_kana.user("u1")
    assert user is not None
    assert (user.name, user.email, user.metadata) == ("Ada L.", "ada@example.com", {"b": 2})


@pytest.mark.parametrize("field", ["email", "billingId"])
def test_update_user_cannot_change_email_or_billing_id(fake_kana: FakeKana, field: str) -> None:
    fake_kana.add_user("u1", email="ada@example.com", billing_id="cus_A1")
    response = gql(fake_kana, UPDATE_USER, {"id": "u1", "input": {field: "cus_B2"}})
    code, message = error(response)
    assert code == "BAD_USER_INPUT"
    assert f'Field "{field}" is not defined by type "UpdateUserInput"' in message
    assert "data" not in response.json()
    user = fake_kana.user("u1")
    assert user is not None and (user.email, user.billing_id) == ("ada@example.com", "cus_A1")


def test_update_of_an_unknown_user_is_not_found(fake_kana: FakeKana) -> None:
    response = gql(fake_kana, UPDATE_USER, {"id": "ghost", "input": {"name": "Boo"}})
    assert error(response) == ("NOT_FOUND", "User ghost not found")
    assert response.json()["data"] == {"updateUser": None}


# --- features and usage ---------------------------------------------------------------------


def test_features_list_and_lookup(fake_kana: FakeKana, ada: str) -> None:
    assert data(gql(fake_kana, "query { features { id name type } }")) == {
        "features": [
            {"id": "exports", "name": "Exports", "type": "CONSUMABLE"},
            {"id": "sso", "name": "Single sign-on", "type": "BINARY"},
        ]
    }
    feature = "query F($id: ID!) { feature(id: $id) { id } }"
    assert data(gql(fake_kana, feature, {"id": "sso"}))["feature"]["id"] == "sso"
    assert data(gql(fake_kana, feature, {"id": "nope"})) == {"feature": None}


def test_record_usage_add_default_negative_and_set(fake_kana: FakeKana, ada: str) -> None:
    recorded = {"recordUsage": {"recorded": True, "reason": None}}
    assert data(record(fake_kana, userId=ada, featureId="exports")) == recorded
    data(record(fake_kana, userId=ada, featureId="exports", delta=5, action="ADD"))
    data(record(fake_kana, userId=ada, featureId="exports", delta=-2))
    assert fake_kana.usage(ada, "exports") == 4
    data(record(fake_kana, userId=ada, featureId="exports", delta=10, action="SET"))
    assert fake_kana.usage(ada, "exports") == 10
    assert [(e.delta, e.action) for e in fake_kana.usage_events] == [
        (1, "ADD"),
        (5, "ADD"),
        (-2, "ADD"),
        (10, "SET"),
    ]


def test_usage_of_an_on_off_feature_is_not_recorded(fake_kana: FakeKana, ada: str) -> None:
    assert data(record(fake_kana, userId=ada, featureId="sso")) == {
        "recordUsage": {"recorded": False, "reason": "Feature sso is not consumable"}
    }
    assert fake_kana.usage_events == []


@pytest.mark.parametrize(
    ("delta", "reason"),
    [
        (1.5, "Int cannot represent non-integer value: 1.5"),
        ("3", 'Int cannot represent non-integer value: "3"'),
        (True, "Int cannot represent non-integer value: true"),
        (2**31, "Int cannot represent non 32-bit signed integer value: 2147483648"),
    ],
)
def test_delta_must_be_an_int(fake_kana: FakeKana, ada: str, delta: Any, reason: str) -> None:
    response = record(fake_kana, userId=ada, featureId="exports", delta=delta)
    code, message = error(response)
    assert code == "BAD_USER_INPUT"
    assert message.endswith(f'at "input.delta"; {reason}')
    assert fake_kana.usage_events == []


def test_an_integral_float_is_an_int_as_in_json(fake_kana: FakeKana, ada: str) -> None:
    data(record(fake_kana, userId=ada, featureId="exports", delta=2.0))
    assert fake_kana.usage_events[0].delta == 2


def test_action_must_be_add_or_set(fake_kana: FakeKana, ada: str) -> None:
    response = record(fake_kana, userId=ada, featureId="exports", action="REMOVE")
    assert error(response)[0] == "BAD_USER_INPUT"
    assert 'Value "REMOVE" does not exist in "UsageAction" enum.' in error(response)[1]


@pytest.mark.parametrize(
    ("user_id", "feature_id", "message"),
    [("ghost", "exports", "User ghost not found"), ("ada", "nope", "Feature nope not found")],
)
def test_usage_for_an_unknown_user_or_feature_is_not_found(
    fake_kana: FakeKana, ada: str, user_id: str, feature_id: str, message: str
) -> None:
    response = record(fake_kana, userId=user_id, featureId=feature_id)
    assert error(response) == ("NOT_FOUND", message)
    assert response.json()["data"] == {"recordUsage": None}


def test_can_use_feature_against_a_budget(fake_kana: FakeKana, ada: str) -> None:
    def can_use(delta: int) -> dict[str, Any]:
        variables = {"userId": ada, "featureId": "exports", "delta": delta}
        answer: dict[str, Any] = data(gql(fake_kana, CAN_USE, variables))["canUseFeature"]
        return answer

    assert can_use(1000) == {
        "access": True,
        "reason": None,
        "consumption": {"used": 0, "budget": None, "overageEnabled": False},
    }
    data(record(fake_kana, userId=ada, featureId="exports", delta=8))
    fake_kana.set_budget(ada, "exports", 10)
    assert can_use(2)["access"] is True
    denied = can_use(3)
    assert (denied["access"], denied["consumption"]["used"]) == (False, 8)
    assert denied["reason"] == "Usage would exceed the budget of 10"
    fake_kana.set_budget(ada, "exports", 10, overage_enabled=True)
    assert can_use(3)["access"] is True


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

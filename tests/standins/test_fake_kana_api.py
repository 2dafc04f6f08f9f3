"""The fake Kana Admin API behaves like Kana where our tests lean on it: auth, users,
features and the usage ledger. Real HTTP throughout."""

from __future__ import annotations

from typing import Any

import pytest

from destinations.standins.kana import FakeKana
from tests.helpers.kana_graphql import CREATE_USER, KEY, data, error, gql, record

UPDATE_USER = """
mutation UpdateUser($id: ID!, $input: UpdateUserInput!) {
  updateUser(id: $id, input: $input) { id name }
}"""
CAN_USE = """
query CanUse($userId: ID!, $featureId: ID!, $delta: Int) {
  canUseFeature(userId: $userId, featureId: $featureId, delta: $delta) {
    access reason consumption { used budget overageEnabled }
  }
}"""
USER = "query User($id: ID!) { user(id: $id) { id name email billingId metadata } }"


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

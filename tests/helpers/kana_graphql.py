"""Kana's GraphQL operations, and calling the fake Kana over real HTTP as its tests do."""

from __future__ import annotations

from typing import Any

import requests

from destinations.standins.kana import FakeKana

KEY = "prv_test"


CREATE_USER = """
mutation CreateUser($input: CreateUserInput!) {
  createUser(input: $input) { id name email billingId }
}"""


RECORD_USAGE = """
mutation RecordUsage($input: CreateUsageEventInput!) {
  recordUsage(input: $input) { recorded reason }
}"""


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

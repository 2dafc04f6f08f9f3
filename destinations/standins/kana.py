"""A fake Kana Admin API: a real GraphQL-over-HTTP server on loopback that tests point a
destination at.

It stands in for ``https://api.usekana.com/graphql`` (see shared/reference/kana-api.md): one
``POST /graphql`` endpoint, the bare key in ``Authorization``, HTTP 200 with an ``errors`` array
for failures, a users store, seedable features and budgets, a usage ledger, and faults a test
can switch on at runtime (5xx, slow answers, dropped or refused connections, 429, bad key,
GraphQL errors).

    with FakeKana(api_keys={"prv_test"}) as kana:
        destination_settings = {"base_url": kana.base_url, "api_key": "prv_test"}
        kana.add_feature("exports", "Exports")
        kana.graphql_error("Try again", "INTERNAL_SERVER_ERROR", times=1, operation="recordUsage")
        ...  # deliver something
        [first, retry] = kana.wait_for(2, operation="recordUsage")
        assert kana.usage("user-1", "exports") == 1

It is not a GraphQL server, only enough of one for a connector that sends one operation with
its values in ``variables``:

- the operation is recognised by its root field, the first selection after ``query`` or
  ``mutation``, the optional operation name and variable definitions (an alias is honoured);
  one root field per operation; fragments and directives are not supported;
- arguments must be variables, ``recordUsage(input: $input)``, never inline literals; the
  values are checked against the argument and input types below (the variable definitions in
  the query are not read);
- the selection set is not read: results carry every field of their type.

Where Kana's behaviour is not documented the fake makes one plain choice and says so in a
comment marked "unverified".
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from destinations.standins.http import (
    ApiError,
    FakeHttpServer,
    Fault,
    Handler,
    RecordedRequest,
    read_body,
)

DEFAULT_API_KEY = "prv_test"
GRAPHQL_PATH = "/graphql"
INT_RANGE = range(-(2**31), 2**31)  # GraphQL's Int is a signed 32-bit integer

UNAUTHORIZED = {"message": "Unauthorized", "extensions": {"code": "UNAUTHENTICATED"}}

# The schema as far as the fake knows it: each root field's arguments, then the input types.
# A trailing "!" marks a required value.
ROOT_FIELDS: dict[str, dict[str, dict[str, str]]] = {
    "Query": {
        "user": {"id": "ID!"},
        "users": {},
        "feature": {"id": "ID!"},
        "features": {},
        "canUseFeature": {"userId": "ID!", "featureId": "ID!", "delta": "Int"},
    },
    "Mutation": {
        "createUser": {"input": "CreateUserInput!"},
        "updateUser": {"id": "ID!", "input": "UpdateUserInput!"},
        "recordUsage": {"input": "CreateUsageEventInput!"},
    },
}
INPUT_TYPES: dict[str, dict[str, str]] = {
    "CreateUserInput": {
        "id": "ID!",
        "billingId": "String",
        "name": "String",
        "email": "String",
        "metadata": "JSON",
    },
    # Kana's API cannot change email or billingId: they are not fields of this input, so
    # sending them is refused like any unknown field.
    "UpdateUserInput": {"name": "String", "metadata": "JSON"},
    "CreateUsageEventInput": {
        "userId": "ID!",
        "featureId": "ID!",
        "delta": "Int",
        "action": "UsageAction",
    },
}
ENUMS = {"UsageAction": ("ADD", "SET")}  # unverified: the enum's name (its values are Kana's)

# Kana takes Stripe or Chargebee customer ids; how it checks them is unverified. Stripe's are
# "cus_" and letters or digits. Chargebee's are chosen by the merchant or generated (such as
# "AzZTZgSs9sXh71Xo"), at most 50 characters: the fake takes 1 to 50 letters or digits.
STRIPE_CUSTOMER_ID = re.compile(r"cus_[A-Za-z0-9]+")
CHARGEBEE_CUSTOMER_ID = re.compile(r"[A-Za-z0-9]{1,50}")

UsageAction = Literal["ADD", "SET"]


# --- what the fake stores -------------------------------------------------------------------


@dataclass
class User:
    id: str
    name: str | None = None
    email: str | None = None
    billing_id: str | None = None
    metadata: Any = None  # any JSON value

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "billingId": self.billing_id,
            "metadata": self.metadata,
        }


@dataclass
class Feature:
    id: str
    name: str
    type: str = "CONSUMABLE"  # Kana's features are CONSUMABLE (metered) or BINARY (on/off)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": self.type}


@dataclass
class UsageEvent:
    user_id: str
    feature_id: str
    delta: int
    action: UsageAction
    recorded_at: float


@dataclass
class Budget:
    limit: int | None  # None: unlimited
    overage_enabled: bool = False


@dataclass
class GraphQLRequest(RecordedRequest):
    """A request to the fake; ``operation`` is its root field, None when it could not be read."""

    operation: str | None = None

    @property
    def variables(self) -> dict[str, Any]:
        variables = self.body.get("variables") if isinstance(self.body, dict) else None
        return variables if isinstance(variables, dict) else {}

    def summary(self) -> str:
        what = self.operation or self.raw_body[:120].decode("utf-8", "replace")
        sent = json.dumps(self.variables)[:120]
        return f"{what} -> {self.status} fault={self.fault} variables={sent}"


class GraphQLError(Exception):
    """One entry of the answer's ``errors`` array."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code

    def as_json(self) -> dict[str, Any]:
        return {"message": self.message, "extensions": {"code": self.code}}


def invalid_query(message: str) -> GraphQLError:
    return GraphQLError(message, "GRAPHQL_VALIDATION_FAILED")


def bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, "BAD_USER_INPUT")


def not_found(what: str, id: str) -> GraphQLError:
    return GraphQLError(f"{what} {id} not found", "NOT_FOUND")


def errors_body(message: str, code: str) -> dict[str, Any]:
    return {"errors": [GraphQLError(message, code).as_json()]}


# --- reading the operation ------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    type: str  # "query", "mutation" or "subscription"
    field: str
    alias: str | None
    variables: dict[str, str]  # argument name -> the variable (without "$") that carries it

    @property
    def key(self) -> str:
        """The answer's key under ``data``."""
        return self.alias or self.field

    @property
    def type_name(self) -> str:
        return self.type.capitalize()


_NAME = r"[_A-Za-z]\w*"
# `query|mutation [Name] [(variable definitions)] {`, or a bare `{` for an anonymous query.
_HEADER = re.compile(
    rf"\s*(?:(query|mutation|subscription)\b\s*(?:{_NAME})?\s*(?:\([^)]*\))?\s*)?{{"
)
_FIELD = re.compile(rf"\s*(?:({_NAME})\s*:\s*)?({_NAME})\s*(?:\(([^)]*)\))?")
_ARGUMENT = re.compile(rf"({_NAME})\s*:\s*\$({_NAME})")
_INNERMOST_GROUP = re.compile(r"\([^()]*\)|\{[^{}]*\}")


def parse_operation(query: str) -> Operation:
    text = re.sub(r"#[^\n]*", "", query)  # comments
    header, end = _HEADER.match(text), text.rfind("}")
    if header is None or end < header.end():
        raise GraphQLError(
            "Syntax Error: the fake Kana reads `query|mutation [Name] { field(...) {...} }`.",
            "GRAPHQL_PARSE_FAILED",
        )
    selection = text[header.end() : end]
    roots = _root_fields(selection)
    if len(roots) != 1:
        raise invalid_query(
            f"The fake Kana answers exactly one root field per operation, got {roots or 'none'}."
        )
    first = _FIELD.match(selection)
    assert first is not None  # _root_fields found a name at the start
    alias, name, arguments = first.groups()
    arguments = arguments or ""
    if _ARGUMENT.sub("", arguments).strip(" \t\r\n,"):
        raise invalid_query(
            f'The fake Kana reads arguments from variables only: write "{name}(input: $input)" '
            f"and send the values in `variables`, not ({arguments.strip()})."
        )
    return Operation(
        type=header[1] or "query",
        field=name,
        alias=alias,
        variables=dict(_ARGUMENT.findall(arguments)),
    )


def _root_fields(selection: str) -> list[str]:
    # Drop argument lists and sub-selections, innermost first: "a: x(...) {...} y" -> "a: x y".
    while True:
        selection, count = _INNERMOST_GROUP.subn(" ", selection)
        if not count:
            break
    return [name for _, name in re.findall(rf"(?:({_NAME})\s*:\s*)?({_NAME})", selection)]


class _Invalid(Exception):
    def __init__(self, path: str, value: Any, reason: str) -> None:
        super().__init__(reason)
        self.path, self.value, self.reason = path, value, reason


def argument_values(operation: Operation, variables: dict[str, Any]) -> dict[str, Any]:
    """The operation's arguments from ``variables``, checked against the schema.

    Messages follow graphql-js, which most GraphQL servers (Kana's too, presumably) run on.
    Arguments that were not sent are absent from the result; those sent as null are None.
    """
    where = f"{operation.type_name}.{operation.field}"
    types = ROOT_FIELDS[operation.type_name][operation.field]
    for name in operation.variables:
        if name not in types:
            raise invalid_query(f'Unknown argument "{name}" on field "{where}".')
    values: dict[str, Any] = {}
    for name, type_ in types.items():
        variable = operation.variables.get(name)
        required = type_.endswith("!")
        if variable is None:
            if required:
                raise invalid_query(
                    f'Field "{where}" argument "{name}" of type "{type_}" is required, '
                    "but it was not provided."
                )
            continue
        if variable not in variables:
            if required:
                raise bad_input(
                    f'Variable "${variable}" of required type "{type_}" was not provided.'
                )
            continue
        try:
            values[name] = _coerce(variables[variable], type_, variable)
        except _Invalid as problem:
            if problem.path == variable and problem.value is None:
                raise bad_input(
                    f'Variable "${variable}" of non-null type "{type_}" must not be null.'
                ) from None
            at = f' at "{problem.path}"' if problem.path != variable else ""
            raise bad_input(
                f'Variable "${variable}" got invalid value {json.dumps(problem.value)}{at}; '
                f"{problem.reason}"
            ) from None
    return values


def _coerce(value: Any, type_: str, path: str) -> Any:
    """``value`` as a GraphQL server takes it for ``type_``; ``path`` names it in errors."""
    named = type_.removesuffix("!")
    if value is None:
        if type_.endswith("!"):
            raise _Invalid(path, value, f'Expected non-nullable type "{type_}" not to be null.')
        return None
    if named in INPUT_TYPES:
        fields = INPUT_TYPES[named]
        if not isinstance(value, dict):
            raise _Invalid(path, value, f'Expected type "{named}" to be an object.')
        for name in value:
            if name not in fields:
                raise _Invalid(path, value, f'Field "{name}" is not defined by type "{named}".')
        coerced = {}
        for name, field_type in fields.items():
            if name in value:
                coerced[name] = _coerce(value[name], field_type, f"{path}.{name}")
            elif field_type.endswith("!"):
                reason = f'Field "{name}" of required type "{field_type}" was not provided.'
                raise _Invalid(path, value, reason)
        return coerced
    if named in ENUMS:
        if value not in ENUMS[named]:
            raise _Invalid(path, value, f'Value "{value}" does not exist in "{named}" enum.')
        return value
    if named == "Int":
        # JSON has one number type: 2.0 is an Int to a JavaScript server, 2.5 and "2" are not.
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not integral:
            raise _Invalid(
                path, value, f"Int cannot represent non-integer value: {json.dumps(value)}"
            )
        if int(value) not in INT_RANGE:
            reason = f"Int cannot represent non 32-bit signed integer value: {value}"
            raise _Invalid(path, value, reason)
        return int(value)
    if named == "ID":
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Invalid(path, value, f"ID cannot represent value: {json.dumps(value)}")
        return str(value)
    if named == "String":
        if not isinstance(value, str):
            raise _Invalid(
                path, value, f"String cannot represent a non string value: {json.dumps(value)}"
            )
        return value
    return value  # JSON takes anything


def check_billing_id(billing_id: str) -> None:
    if not (
        STRIPE_CUSTOMER_ID.fullmatch(billing_id) or CHARGEBEE_CUSTOMER_ID.fullmatch(billing_id)
    ):
        raise bad_input(
            f'billingId "{billing_id}" is not a Stripe (cus_...) or Chargebee customer id'
        )


# --- the server -----------------------------------------------------------------------------


class FakeKana(FakeHttpServer[GraphQLRequest]):
    """A Kana Admin API on ``http://127.0.0.1:<port>/graphql``; start it with ``with``."""

    service = "Kana"

    def __init__(
        self,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        *,
        host: str = "127.0.0.1",
        unauthorized_status: int = 200,
    ) -> None:
        super().__init__(host=host)
        self.api_keys: set[str] = set(api_keys)  # may be changed at runtime to revoke a key
        # Kana answers a bad key with 200 and an error; a gateway in front of it may say 401.
        self.unauthorized_status = unauthorized_status
        self._users: dict[str, User] = {}
        self._features: dict[str, Feature] = {}
        self._budgets: dict[tuple[str, str], Budget] = {}
        self._usage: dict[tuple[str, str], int] = {}
        self._usage_events: list[UsageEvent] = []

    @property
    def base_url(self) -> str:
        return self.origin + GRAPHQL_PATH

    # --- faults (``operation`` limits one to a root field, e.g. "recordUsage") ---

    def server_error(
        self, *, status: int = 500, times: int | None = None, operation: str | None = None
    ) -> Fault:
        body = errors_body("Internal Server Error", "INTERNAL_SERVER_ERROR")
        return self._add_fault(Fault("status", operation, times, status, body))

    def graphql_error(
        self,
        message: str = "Internal server error",
        code: str = "INTERNAL_SERVER_ERROR",
        *,
        times: int | None = None,
        operation: str | None = None,
    ) -> Fault:
        """Answer HTTP 200 with this error and no data, the way Kana reports its failures."""
        body = {"data": None, **errors_body(message, code)}
        name = f"graphql_error {code}"
        return self._add_fault(Fault("status", operation, times, 200, body, name=name))

    def rate_limit(
        self, retry_after: int = 30, *, times: int | None = None, operation: str | None = None
    ) -> Fault:
        # Unverified: how Kana throttles. The fake answers as most gateways do: 429, Retry-After.
        body = errors_body("Too many requests", "RATE_LIMITED")
        headers = {"Retry-After": str(retry_after)}
        return self._add_fault(Fault("status", operation, times, 429, body, headers))

    def reject_key(self, *, times: int | None = None, operation: str | None = None) -> Fault:
        """Answer as for an unknown key, whatever is sent."""
        body = {"errors": [UNAUTHORIZED]}
        return self._add_fault(Fault("status", operation, times, self.unauthorized_status, body))

    def hang(
        self, seconds: float = 10.0, *, times: int | None = None, operation: str | None = None
    ) -> Fault:
        """Wait ``seconds`` before answering normally: longer than the client's timeout."""
        return self._add_fault(Fault("hang", operation, times, seconds=seconds))

    def drop_connection(
        self, *, mid_body: bool = False, times: int | None = None, operation: str | None = None
    ) -> Fault:
        """Close the socket without an answer, or (mid_body) after half of one."""
        kind: Literal["drop", "truncate"] = "truncate" if mid_body else "drop"
        return self._add_fault(Fault(kind, operation, times))

    # --- recording ---

    def operations_received(self, name: str) -> list[GraphQLRequest]:
        """Requests for the root field ``name`` (e.g. "createUser"), oldest first."""
        return [r for r in self.received if r.operation == name]

    def wait_for(
        self,
        what: int | Callable[[GraphQLRequest], bool] = 1,
        timeout: float = 2.0,
        *,
        operation: str | None = None,
    ) -> list[GraphQLRequest]:
        """Wait until ``what`` requests (or one matching ``what``) arrived; return the matches.

        ``operation`` narrows both forms. Raises AssertionError listing everything received.
        """
        return self._wait_for(
            what, timeout, lambda r: operation in (None, r.operation), f"operation={operation}"
        )

    # --- seeding and inspecting data ---

    def add_user(
        self,
        id: str,
        *,
        name: str | None = None,
        email: str | None = None,
        billing_id: str | None = None,
        metadata: Any = None,
    ) -> User:
        """Seed a user as if created earlier (the billing id is not checked)."""
        with self._lock:
            user = self._users[id] = User(id, name, email, billing_id, metadata)
            return user

    def add_feature(self, id: str, name: str, type: str = "CONSUMABLE") -> Feature:
        with self._lock:
            feature = self._features[id] = Feature(id, name, type)
            return feature

    def set_budget(
        self, user_id: str, feature_id: str, budget: int | None, *, overage_enabled: bool = False
    ) -> None:
        """What canUseFeature measures usage against; with no budget set, usage is unlimited."""
        with self._lock:
            self._budgets[user_id, feature_id] = Budget(budget, overage_enabled)

    @property
    def users(self) -> list[User]:
        with self._lock:
            return list(self._users.values())

    def user(self, id: str) -> User | None:
        with self._lock:
            return self._users.get(id)

    @property
    def features(self) -> list[Feature]:
        with self._lock:
            return list(self._features.values())

    def usage(self, user_id: str, feature_id: str) -> int:
        with self._lock:
            return self._usage.get((user_id, feature_id), 0)

    @property
    def usage_events(self) -> list[UsageEvent]:
        """Usage recorded, oldest first (refused recordUsage calls are not in it)."""
        with self._lock:
            return list(self._usage_events)

    # --- HTTP handling ---

    def _serve(self, handler: Handler) -> None:
        split = urlsplit(handler.path)
        raw = read_body(handler)
        body, parsed = _read_request(raw)
        record = GraphQLRequest(
            method=handler.command,
            path=split.path,
            headers=dict(handler.headers.items()),
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            body=body,
            raw_body=raw,
            received_at=time.time(),
            operation=parsed.field if isinstance(parsed, Operation) else None,
        )
        fault = self._arrive(record, record.operation)
        if self._fault_answered(handler, record, fault):
            return
        try:
            if split.path != GRAPHQL_PATH:
                raise ApiError(
                    404, errors_body(f"Cannot {handler.command} {split.path}", "NOT_FOUND")
                )
            if handler.command != "POST":
                # GraphQL over HTTP allows GET for queries; Kana's docs only show POST.
                body_405 = errors_body("Send GraphQL requests as POST", "METHOD_NOT_ALLOWED")
                raise ApiError(405, body_405, {"Allow": "POST"})
            if isinstance(parsed, ApiError):
                raise parsed  # a body that is no GraphQL request is refused before the key is read
            self._authenticate(record)
            status, answer, headers = 200, self._execute(parsed, record.variables), {}
        except ApiError as error:
            status, answer, headers = error.status, error.body, error.headers
        truncate = fault is not None and fault.kind == "truncate"
        self._reply(handler, record, status, answer, headers, truncate=truncate)

    def _authenticate(self, record: GraphQLRequest) -> None:
        # Kana takes the key alone. "Bearer prv_..." is not a key it issued, so it is refused
        # like any unknown key rather than forgiven: a connector adding "Bearer" must fail here.
        key = (record.header("Authorization") or "").strip()
        if key not in self.api_keys:
            raise ApiError(self.unauthorized_status, {"errors": [UNAUTHORIZED]})

    def _execute(
        self, parsed: Operation | GraphQLError, variables: dict[str, Any]
    ) -> dict[str, Any]:
        """The answer body: ``data``, or ``errors`` when the request never reached a resolver."""
        try:
            if isinstance(parsed, GraphQLError):
                raise parsed
            if parsed.field not in ROOT_FIELDS.get(parsed.type_name, {}):
                raise invalid_query(
                    f'Cannot query field "{parsed.field}" on type "{parsed.type_name}".'
                )
            arguments = argument_values(parsed, variables)
        except GraphQLError as error:
            return {"errors": [error.as_json()]}
        with self._lock:
            try:
                result = self._resolvers()[parsed.field](arguments)
            except GraphQLError as error:
                # An execution error nulls the field and says where. Unverified: whether Kana's
                # root fields are nullable (if not, "data" itself would be null).
                error_json = {**error.as_json(), "path": [parsed.key]}
                return {"data": {parsed.key: None}, "errors": [error_json]}
        return {"data": {parsed.key: result}}

    # --- resolvers (called with the lock held, with arguments checked against the schema) ---

    def _resolvers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "user": self._user,
            "users": lambda _: [user.as_json() for user in self._users.values()],
            "feature": self._feature,
            "features": lambda _: [feature.as_json() for feature in self._features.values()],
            "createUser": self._create_user,
            "updateUser": self._update_user,
            "recordUsage": self._record_usage,
            "canUseFeature": self._can_use_feature,
        }

    def _user(self, arguments: dict[str, Any]) -> dict[str, Any] | None:
        user = self._users.get(arguments["id"])
        return user.as_json() if user else None

    def _feature(self, arguments: dict[str, Any]) -> dict[str, Any] | None:
        feature = self._features.get(arguments["id"])
        return feature.as_json() if feature else None

    def _create_user(self, arguments: dict[str, Any]) -> dict[str, Any]:
        fields = arguments["input"]
        if not fields["id"]:
            raise bad_input("User id must not be empty")  # unverified: Kana's wording
        if fields["id"] in self._users:
            # Unverified: Kana's answer to a second createUser for an id; CONFLICT is a guess.
            raise GraphQLError(f"User with id {fields['id']} already exists", "CONFLICT")
        if fields.get("billingId") is not None:
            check_billing_id(fields["billingId"])
        user = User(
            fields["id"],
            fields.get("name"),
            fields.get("email"),
            fields.get("billingId"),
            fields.get("metadata"),
        )
        self._users[user.id] = user
        return user.as_json()

    def _update_user(self, arguments: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(arguments["id"])
        if user is None:
            raise not_found("User", arguments["id"])
        # Unverified: absent fields stay, a null clears; metadata is replaced, not merged.
        fields = arguments["input"]
        if "name" in fields:
            user.name = fields["name"]
        if "metadata" in fields:
            user.metadata = fields["metadata"]
        return user.as_json()

    def _record_usage(self, arguments: dict[str, Any]) -> dict[str, Any]:
        fields = arguments["input"]
        user, feature = self._user_and_feature(fields["userId"], fields["featureId"])
        # An explicit null takes the default too (unverified; GraphQL would pass the null on).
        delta = fields.get("delta")
        delta = 1 if delta is None else delta
        action: UsageAction = fields.get("action") or "ADD"
        if feature.type != "CONSUMABLE":
            # Unverified: when Kana answers recorded: false. Usage of an on/off feature is the
            # fake's one such case, so a connector's handling of it can be tested.
            return {"recorded": False, "reason": f"Feature {feature.id} is not consumable"}
        key = (user.id, feature.id)
        # Plain arithmetic, unverified: reverting more than was used goes below zero, and SET
        # takes any value, so a test sees exactly what the connector sent.
        self._usage[key] = delta if action == "SET" else self._usage.get(key, 0) + delta
        self._usage_events.append(UsageEvent(user.id, feature.id, delta, action, time.time()))
        return {"recorded": True, "reason": None}

    def _can_use_feature(self, arguments: dict[str, Any]) -> dict[str, Any]:
        user, feature = self._user_and_feature(arguments["userId"], arguments["featureId"])
        delta = arguments.get("delta")
        delta = 1 if delta is None else delta
        used = self._usage.get((user.id, feature.id), 0)
        budget = self._budgets.get((user.id, feature.id), Budget(None))
        # Unverified: the reasons' wording, and access while in overage.
        if budget.limit is None or used + delta <= budget.limit:
            access, reason = True, None
        elif budget.overage_enabled:
            access, reason = True, f"Over the budget of {budget.limit}; overage is enabled"
        else:
            access, reason = False, f"Usage would exceed the budget of {budget.limit}"
        return {
            "access": access,
            "reason": reason,
            "consumption": {
                "used": used,
                "budget": budget.limit,
                "overageEnabled": budget.overage_enabled,
            },
        }

    def _user_and_feature(self, user_id: str, feature_id: str) -> tuple[User, Feature]:
        user, feature = self._users.get(user_id), self._features.get(feature_id)
        if user is None:
            raise not_found("User", user_id)
        if feature is None:
            raise not_found("Feature", feature_id)
        return user, feature


def _read_request(raw: bytes) -> tuple[dict[str, Any] | None, Operation | GraphQLError | ApiError]:
    """The request's JSON object (None if unreadable), and what it asks: the operation, the
    GraphQL error that says why it cannot be read, or the HTTP 400 answer for a bad body."""

    def refused(message: str) -> tuple[None, ApiError]:
        return None, ApiError(400, errors_body(message, "BAD_REQUEST"))

    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return refused(f"Invalid JSON body: {error}")
    if not isinstance(body, dict):
        return refused("The request body must be a JSON object")
    if not isinstance(body.get("query"), str) or not body["query"].strip():
        return refused("GraphQL operations must contain a non-empty `query`.")
    if not isinstance(body.get("variables") or {}, dict):
        return refused("`variables` must be a JSON object")
    try:
        return body, parse_operation(body["query"])
    except GraphQLError as error:
        return body, error


# --- for pytest fixtures --------------------------------------------------------------------


def serve_fake_kana(**options: Any) -> Iterator[FakeKana]:
    """A running fake for the length of one test: ``yield from serve_fake_kana()``."""
    with FakeKana(**options) as server:
        yield server

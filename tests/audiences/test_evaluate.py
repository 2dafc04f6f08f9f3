"""Who matches a definition: each kind of condition, all of / any of, windows ending now, and
re-evaluating a few users agreeing with evaluating everyone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from destinations.audiences.compute import compute
from destinations.audiences.evaluate import Evaluator
from destinations.models import Account, Audience, Profile
from tests.audiences.conftest import MakeEvent, MakeUser

pytestmark = pytest.mark.django_db


def members(definition: dict[str, Any], now: datetime, **kwargs: Any) -> set[int]:
    return Evaluator(kwargs.pop("subject", "users"), now=now, **kwargs).members(definition)


def exported(count: str, times: int, **extra: Any) -> dict[str, Any]:
    return {"type": "event", "event": "Report Exported", "count": count, "times": times,
            "where": [], "within_days": None, **extra}  # fmt: skip


def test_trait_conditions_read_the_user_as_mapping_rules_read_events(
    make_user: MakeUser, now: datetime
) -> None:
    pro = make_user("u-pro", email="a@x.io", traits={"plan": "pro", "seats": "12", "beta": "true"})
    free = make_user("u-free", traits={"plan": "free", "seats": 2, "beta": False})
    make_user("u-none")

    def who(**leaf: Any) -> set[int]:
        return members({"match": "all", "conditions": [{"type": "trait", **leaf}]}, now)

    assert who(path="traits.plan", op="equals", value="pro") == {pro.pk}
    assert who(path="traits.seats", op="gt", value=10) == {pro.pk}  # "12" compares as 12
    assert who(path="traits.beta", op="is_true") == {pro.pk}  # "true" is true, as in forms
    assert who(path="traits.beta", op="is_false") == {free.pk}
    assert who(path="email", op="exists") == {pro.pk}
    assert len(who(path="traits.plan", op="not_equals", value="pro")) == 2  # missing counts


def test_event_counts_windows_and_property_conditions(
    make_user: MakeUser, make_event: MakeEvent, now: datetime
) -> None:
    ada, bob, cy = make_user("ada"), make_user("bob"), make_user("cy")
    for days in (1, 2, 3):
        make_event(ada, "Report Exported", days_ago=days, properties={"format": "csv"})
    make_event(bob, "Report Exported", days_ago=1, properties={"format": "pdf"})
    make_event(bob, "Report Exported", days_ago=20, properties={"format": "csv"})

    def who(condition: dict[str, Any]) -> set[int]:
        return members({"match": "all", "conditions": [condition]}, now)

    assert who(exported("at_least", 3)) == {ada.pk}
    assert who(exported("at_least", 2)) == {ada.pk, bob.pk}
    assert who(exported("at_least", 2, within_days=7)) == {ada.pk}
    assert who(exported("exactly", 1, within_days=7)) == {bob.pk}
    assert who(exported("at_most", 1, within_days=7)) == {bob.pk, cy.pk}
    assert who(exported("none", 0)) == {cy.pk}
    assert who(exported("none", 0, within_days=7)) == {cy.pk}
    csv = [{"path": "properties.format", "op": "equals", "value": "csv"}]
    assert who(exported("at_least", 1, where=csv, within_days=7)) == {ada.pk}
    assert who(exported("at_least", 1, where=csv)) == {ada.pk, bob.pk}
    # The same window measured from a later moment: ada's exports have aged out.
    later = now + timedelta(days=6, hours=1)
    window = {"match": "all", "conditions": [exported("at_least", 2, within_days=7)]}
    assert members(window, later) == set()


def test_all_of_any_of_and_one_level_of_nesting(
    make_user: MakeUser, make_event: MakeEvent, now: datetime
) -> None:
    ada = make_user("ada", traits={"plan": "pro"})
    bob = make_user("bob", traits={"plan": "trial"})
    cy = make_user("cy", traits={"plan": "free"})
    make_event(bob, "Report Exported")
    plan = {"type": "trait", "path": "traits.plan", "op": "equals"}
    definition = {
        "match": "all",
        "conditions": [
            {"type": "group", "match": "any", "conditions": [
                {**plan, "value": "pro"}, {**plan, "value": "trial"}]},
            exported("none", 0),
        ],
    }  # fmt: skip
    assert members(definition, now) == {ada.pk}
    assert members({**definition, "match": "any"}, now) == {ada.pk, bob.pk, cy.pk}


def test_account_conditions_and_account_audiences(
    make_user: MakeUser,
    make_event: MakeEvent,
    make_account: Callable[..., Account],
    now: datetime,
) -> None:
    ada, bob, cy, dee = (make_user(u) for u in ("ada", "bob", "cy", "dee"))
    big = make_account("acct-big", ada, bob, cy, plan="enterprise")
    small = make_account("acct-small", dee, plan="starter")
    enterprise = {"type": "account", "path": "traits.plan", "op": "equals", "value": "enterprise"}
    assert members({"match": "all", "conditions": [enterprise]}, now) == {ada.pk, bob.pk, cy.pk}
    for user in (ada, bob, dee):
        make_event(user, "Report Exported", days_ago=1)
    # Accounts where at least 2 users exported in the last 7 days.
    busy = {"match": "all", "conditions": [exported("at_least", 2, within_days=7)]}
    assert members(busy, now, subject="accounts") == {big.pk}
    quiet = {"match": "all", "conditions": [exported("none", 0, within_days=7)]}
    assert members(quiet, now, subject="accounts") == set()
    starter = {"type": "account", "path": "traits.plan", "op": "equals", "value": "starter"}
    assert members({"match": "all", "conditions": [starter]}, now, subject="accounts") == {small.pk}


def test_audience_of_audiences(make_user: MakeUser, make_event: MakeEvent, now: datetime) -> None:
    ada, bob = make_user("ada", traits={"plan": "pro"}), make_user("bob", traits={"plan": "pro"})
    make_event(ada, "Report Exported")
    exporters = Audience.objects.create(
        name="Exporters",
        key="exporters",
        definition={"match": "all", "conditions": [exported("at_least", 1)]},
    )
    compute(exporters, now=now)
    in_it = {"type": "audience", "audience": exporters.pk, "in": True}
    assert members({"match": "all", "conditions": [in_it]}, now) == {ada.pk}
    assert members({"match": "all", "conditions": [{**in_it, "in": False}]}, now) == {bob.pk}


def test_merged_away_users_are_nobody(make_user: MakeUser, now: datetime) -> None:
    survivor = make_user("ada", traits={"plan": "pro"})
    make_user("ada-old", traits={"plan": "pro"}, merged_into=survivor)
    plan = {"type": "trait", "path": "traits.plan", "op": "equals", "value": "pro"}
    assert members({"match": "all", "conditions": [plan]}, now) == {survivor.pk}


def test_evaluating_a_few_users_agrees_with_evaluating_everyone(
    make_user: MakeUser, make_event: MakeEvent, now: datetime
) -> None:
    users = [make_user(f"u{i}", traits={"n": i}) for i in range(30)]
    for i, user in enumerate(users):
        for day in range(i % 5):
            make_event(user, "Report Exported", days_ago=day * 3)
    definition = {
        "match": "any",
        "conditions": [
            exported("at_least", 3, within_days=8),
            {"type": "group", "match": "all", "conditions": [
                {"type": "trait", "path": "traits.n", "op": "gt", "value": 20},
                exported("none", 0)]},
        ],
    }  # fmt: skip
    everyone = members(definition, now)
    assert everyone  # the definition picks some and not others
    assert everyone != {u.pk for u in users}
    some = {u.pk for u in users[::3]}
    assert members(definition, now, within=some) == everyone & some
    assert members(definition, now, within=set()) == set()
    assert members(definition, now, within={10**9}) == set()  # nobody by that id
    assert Profile.objects.count() == 30

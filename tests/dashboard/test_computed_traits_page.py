"""The user page lists the user's computed traits, whatever values they hold."""

from __future__ import annotations

import pytest
from django.test import Client

from destinations.audiences.computed_traits import compute_trait
from destinations.models import ComputedTrait, Source
from tests.dashboard.audience_support import make_event, make_user, text_of, words_of

pytestmark = pytest.mark.django_db


def test_the_user_page_lists_computed_traits_with_their_values(
    operator: Client, source: Source
) -> None:
    ada, bob = make_user("u-ada"), make_user("u-bob")
    make_event(source, ada, "Plan Changed", properties={"plan": "<b>pro</b>", "seats": 2**70})
    traits = [
        ComputedTrait.objects.create(
            name="Plan changes", key="plan_changes",
            definition={"kind": "count", "event": "Plan Changed", "where": [],
                        "within_days": None},
        ),
        ComputedTrait.objects.create(
            name="Last plan", key="last_plan",
            definition={"kind": "last_value", "event": "Plan Changed", "where": [],
                        "within_days": None, "property": "properties.plan"},
        ),
        ComputedTrait.objects.create(
            name="Seats", key="seats",
            definition={"kind": "last_value", "event": "Plan Changed", "where": [],
                        "within_days": None, "property": "properties.seats"},
        ),
    ]  # fmt: skip
    for trait in traits:
        compute_trait(trait)
    page = operator.get(f"/users/{ada.pk}/")
    assert page.status_code == 200
    raw = page.content.decode()
    # The value is escaped, not markup: the page shows the JSON text "<b>pro</b>".
    assert "<code>&quot;&lt;b&gt;pro&lt;/b&gt;&quot;</code>" in raw
    text = text_of(page)
    assert 'Last plan <code>last_plan</code> = <code>"<b>pro</b>"</code>' in text
    assert "Plan changes <code>plan_changes</code> = <code>1</code>" in text
    assert f"Seats <code>seats</code> = <code>{2**70}</code>" in text
    assert "No computed trait has a value for this user." in words_of(
        operator.get(f"/users/{bob.pk}/")
    )

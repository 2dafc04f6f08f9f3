"""An audience another audience uses in a condition is not deleted: the other one would be left
naming an audience that is gone (its "not in" would then match everyone)."""

from __future__ import annotations

import pytest

from destinations.audiences.services import InvalidAudience, audience_create, audience_delete
from destinations.models import Audience

pytestmark = pytest.mark.django_db

TRIALS = {"match": "all", "conditions": [
    {"type": "trait", "path": "traits.plan", "op": "equals", "value": "trial"}]}  # fmt: skip


def test_an_audience_in_use_is_not_deleted_until_the_one_using_it_changes() -> None:
    trials, _ = audience_create(name="Trials", subject="users", definition=TRIALS)
    uses = {
        "match": "all",
        "conditions": [{"type": "audience", "audience": trials.pk, "in": False}],
    }
    paying, _ = audience_create(name="Paying", subject="users", definition=uses)

    with pytest.raises(InvalidAudience) as refused:
        audience_delete(trials, tell_members=False)
    assert (
        str(refused.value)
        == "'Paying' uses this audience in a condition: change or delete that first"
    )
    assert Audience.objects.filter(pk=trials.pk).exists()

    audience_delete(paying, tell_members=False)
    audience_delete(trials, tell_members=False)
    assert not Audience.objects.exists()

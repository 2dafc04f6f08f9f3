"""Merging users (fields chosen, what moves, exact undo) and deleting them (events, suppression)."""

from __future__ import annotations

from typing import Any

import pytest

from destinations.models import (
    Account,
    AnonymousId,
    AuditAction,
    Event,
    Membership,
    Profile,
    Suppression,
)
from destinations.people.delete import DeleteOptions, profile_delete
from destinations.people.merge import MergeRefused, merge_undo, plan_merge, profile_merge
from destinations.sources import INTERNAL_SOURCE
from tests.helpers.ingest import IngestPost, send

pytestmark = pytest.mark.django_db


@pytest.fixture
def twins(post_ingest: IngestPost) -> tuple[Profile, Profile]:
    """Two users sharing an email: the duplicate-email conflict."""
    send(
        post_ingest,
        [
            {"type": "identify", "userId": "u-old", "anonymousId": "anon-1",
             "traits": {"email": "ada@x.co", "name": "Ada L", "plan": "free"}},
            {"type": "group", "userId": "u-old", "groupId": "g-shared"},
            {"type": "group", "userId": "u-old", "groupId": "g-old-only"},
            {"type": "track", "userId": "u-old", "event": "Old Thing"},
            {"type": "identify", "userId": "u-new", "anonymousId": "anon-2",
             "traits": {"email": "ADA@x.co", "name": "Ada Lovelace", "billingId": "cus_9",
                        "plan": "pro"}},
            {"type": "group", "userId": "u-new", "groupId": "g-shared"},
            {"type": "track", "userId": "u-new", "event": "New Thing"},
        ],
    )  # fmt: skip
    return Profile.objects.get(user_id="u-old"), Profile.objects.get(user_id="u-new")


def state() -> dict[str, Any]:
    """Everything a merge touches, to compare before and after an undo."""
    return {
        "profiles": sorted(
            Profile.objects.values_list(
                "pk", "user_id", "email", "name", "billing_id", "traits", "merged_into_id",
                "first_seen_at", "last_seen_at",
            )
        ),
        "events": sorted(
            Event.objects.exclude(source__name=INTERNAL_SOURCE).values_list(
                "pk", "profile_id", "merged_from_id"
            )
        ),
        "anonymous_ids": sorted(AnonymousId.objects.values_list("value", "profile_id")),
        "memberships": sorted(Membership.objects.values_list("profile_id", "account__group_id")),
    }  # fmt: skip


def test_preview_says_what_moves(twins: tuple[Profile, Profile]) -> None:
    old, new = twins
    plan = plan_merge(survivor=old, absorbed=[new], choices={"name": new.pk})
    assert plan.events == 3  # identify, group, track of u-new
    assert plan.anonymous_ids == ["anon-2"]
    assert plan.memberships == ["g-shared"]
    assert ("name", "Ada L", "Ada Lovelace") in plan.changes
    assert ("billing_id", None, "cus_9") in plan.changes  # taken from whoever has one


def test_merge_with_chosen_fields_moves_everything(twins: tuple[Profile, Profile]) -> None:
    old, new = twins
    entry = profile_merge(survivor=old, absorbed=[new], choices={"name": old.pk})
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.name, old.billing_id, old.email) == ("Ada L", "cus_9", "ada@x.co")
    assert old.traits["plan"] == "free"  # the survivor's traits win
    assert new.merged_into_id == old.pk
    assert set(
        Event.objects.filter(profile=old, source__name="Web app").values_list("event", flat=True)
    ) >= {"Old Thing", "New Thing"}
    assert not Event.objects.filter(profile=new).exists()
    assert set(AnonymousId.objects.filter(profile=old).values_list("value", flat=True)) == {
        "anon-1",
        "anon-2",
    }
    assert set(
        Membership.objects.filter(profile=old).values_list("account__group_id", flat=True)
    ) == {"g-shared", "g-old-only"}
    assert entry.action == AuditAction.MERGE
    assert entry.summary == "Merged u-new into u-old (3 events moved)"
    # The survivor was re-sent to destinations as an identify under the internal source.
    resent = Event.objects.get(source__name=INTERNAL_SOURCE)
    assert (resent.type, resent.user_id) == ("identify", "u-old")
    assert resent.payload["traits"]["billingUserId"] == "cus_9"


def test_events_for_the_absorbed_user_id_go_to_the_survivor(
    post_ingest: IngestPost, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    profile_merge(survivor=old, absorbed=[new])
    send(post_ingest, [{"type": "track", "userId": "u-new", "event": "After Merge"}])
    assert Event.objects.get(event="After Merge").profile_id == old.pk


def test_undo_restores_exactly(twins: tuple[Profile, Profile]) -> None:
    old, new = twins
    before = state()
    entry = profile_merge(survivor=old, absorbed=[new], choices={"name": new.pk})
    assert state() != before
    undo = merge_undo(entry)
    assert state() == before
    entry.refresh_from_db()
    assert entry.undone_at is not None
    assert undo.action == AuditAction.MERGE_UNDONE
    with pytest.raises(MergeRefused, match="already undone"):
        merge_undo(entry)


def test_chained_merges_undo_in_order(
    post_ingest: IngestPost, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    send(post_ingest, [{"type": "identify", "userId": "u-third", "traits": {"email": "t@x.co"}}])
    third = Profile.objects.get(user_id="u-third")
    before = state()
    first = profile_merge(survivor=old, absorbed=[new])
    second = profile_merge(survivor=third, absorbed=[old])
    assert Profile.objects.get(pk=new.pk).merged_into_id == third.pk  # re-pointed at the root
    with pytest.raises(MergeRefused, match="undo that merge first"):
        merge_undo(first)
    merge_undo(second)
    merge_undo(first)
    assert state() == before


def test_merge_refusals_name_the_problem(twins: tuple[Profile, Profile]) -> None:
    old, new = twins
    with pytest.raises(MergeRefused, match="survivor cannot also be merged"):
        profile_merge(survivor=old, absorbed=[old])
    with pytest.raises(MergeRefused, match="keeps its own userId 'u-old'"):
        profile_merge(survivor=old, absorbed=[new], choices={"user_id": new.pk})
    profile_merge(survivor=old, absorbed=[new])
    with pytest.raises(MergeRefused, match="already merged"):
        profile_merge(survivor=old, absorbed=[Profile.objects.get(pk=new.pk)])


def test_delete_keeping_events(twins: tuple[Profile, Profile]) -> None:
    old, _ = twins
    entry = profile_delete(old, DeleteOptions())
    assert not Profile.objects.filter(pk=old.pk).exists()
    assert Event.objects.filter(event="Old Thing", profile=None).count() == 1
    assert entry.summary == "Deleted u-old (events kept)"


def test_delete_with_events_and_suppression(
    post_ingest: IngestPost, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    profile_merge(survivor=new, absorbed=[old])
    entry = profile_delete(new, DeleteOptions(delete_events=True, suppress=True))
    assert not Profile.objects.exists()
    assert not Event.objects.filter(source__name="Web app").exists()
    assert entry.data["events_deleted"] == 8  # the 7 sent, and the merge's re-sent identify
    assert set(Suppression.objects.values_list("kind", "value")) == {
        ("user_id", "u-new"), ("user_id", "u-old"), ("email", "ada@x.co"),
    }  # fmt: skip
    # Suppressed at ingest: answered 200, not stored; others still are.
    response = post_ingest(
        "batch",
        {"batch": [
            {"type": "track", "userId": "u-old", "event": "Ghost"},
            {"type": "identify", "userId": "u-other", "traits": {"email": "ada@x.co"}},
            {"type": "track", "userId": "u-live", "event": "Alive"},
        ]},
    )  # fmt: skip
    assert response.status_code == 200
    assert response.json()["suppressed"] == 2
    assert list(Event.objects.filter(source__name="Web app").values_list("event", flat=True)) == [
        "Alive"
    ]
    assert Account.objects.count() == 2


def test_a_merged_away_user_is_deleted_through_its_survivor(twins: tuple[Profile, Profile]) -> None:
    old, new = twins
    profile_merge(survivor=old, absorbed=[new])
    with pytest.raises(ValueError, match="was merged into another user: delete that user instead"):
        profile_delete(Profile.objects.get(pk=new.pk), DeleteOptions())
    assert Profile.objects.filter(pk=new.pk).exists()

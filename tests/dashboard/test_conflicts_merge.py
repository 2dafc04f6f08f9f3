"""Merging users in the dashboard: the comparison page and its preview with chosen fields,
refusals, undo from the audit log, Merge all, and the flags on a user's page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from destinations import jobs
from destinations.models import (
    AnonymousId,
    AuditAction,
    AuditEntry,
    Event,
    Job,
    JobKind,
    Membership,
    Profile,
)
from tests.helpers.conflicts import make_conflicts, merge_form
from tests.helpers.ingest import IngestPost, send
from tests.helpers.members import MakeMember
from tests.helpers.pages import messages_of, text_of, words_of

pytestmark = pytest.mark.django_db


# Merge ----------------------------------------------------------------------------------------


def test_merge_page_compares_users_and_previews_the_default(
    staff_client: Client, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    response = staff_client.get(reverse("conflicts-merge"), {"email": "Ada@X.co"})
    assert response.status_code == 200
    page = text_of(response)
    assert [c.profile for c in response.context["columns"]] == [old, new]
    assert response.context["survivor"] == old.pk  # created first, Kana's rule
    assert "created first" in page
    columns = {c.profile.user_id: c for c in response.context["columns"]}
    assert (columns["u-old"].events, columns["u-new"].events) == (3, 3)
    assert columns["u-new"].anonymous_ids == ["anon-2"]
    assert columns["u-new"].accounts == ["g-new-only"]
    # The default merge: each field keeps the survivor's value, else the first other one's.
    plan = response.context["plan"]
    assert plan.events == 3
    assert plan.anonymous_ids == ["anon-2"]
    assert plan.memberships == ["g-new-only"]
    assert plan.changes == [("billing_id", None, "cus_9")]
    assert "u-new will be merged into u-old." in words_of(response)


def test_preview_fragment_shows_what_moves_and_field_changes(
    staff_client: Client, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    data = merge_form(old, [old, new], keep_name=new, keep_billing_id=new)
    response = staff_client.post(
        reverse("conflicts-merge-preview"), data, headers={"HX-Request": "true"}
    )
    body = text_of(response)
    assert body.lstrip().startswith('<section id="merge-preview"')
    assert '<strong id="plan-events">3</strong>' in body
    assert "anon-2" in body and "g-new-only" in body
    words = words_of(response)
    assert "Name Ada L → Ada Lovelace" in words
    assert "Billing id — → cus_9" in words
    # Without htmx the same POST answers the whole page, preview included.
    page = staff_client.post(reverse("conflicts-merge-preview"), data)
    assert "<html" in text_of(page)
    assert page.context["plan"].changes == [
        ("name", "Ada L", "Ada Lovelace"),
        ("billing_id", None, "cus_9"),
    ]
    assert not conflict_entries().exists()  # a preview changes nothing


def test_merge_with_chosen_fields_applies_them(
    staff_client: Client, staff_member: User, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    data = merge_form(old, [old, new], keep_name=new, keep_billing_id=new)
    response = staff_client.post(reverse("conflicts-merge-confirm"), data, follow=True)
    assert response.redirect_chain == [(reverse("user-detail", args=[old.pk]), 302)]
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.user_id, old.name, old.billing_id) == ("u-old", "Ada Lovelace", "cus_9")
    assert new.merged_into_id == old.pk
    assert set(Event.objects.filter(profile=old, source__name="Web app").values_list(
        "event", flat=True
    )) >= {"Old Thing", "New Thing"}  # fmt: skip
    assert set(AnonymousId.objects.filter(profile=old).values_list("value", flat=True)) == {
        "anon-1",
        "anon-2",
    }
    assert set(
        Membership.objects.filter(profile=old).values_list("account__group_id", flat=True)
    ) == {"g-shared", "g-new-only"}
    entry = AuditEntry.objects.get(action=AuditAction.MERGE)
    assert entry.actor == staff_member
    assert messages_of(response) == [
        "Merged u-new into u-old (3 events moved). It can be undone from the audit log."
    ]
    page = text_of(response)
    assert "Absorbed" in page and reverse("user-detail", args=[new.pk]) in page


def test_survivor_can_be_the_newer_user(
    staff_client: Client, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    data = merge_form(new, [old, new])
    response = staff_client.post(reverse("conflicts-merge-confirm"), data)
    assert response.status_code == 302
    old.refresh_from_db()
    assert old.merged_into_id == new.pk
    assert Profile.objects.get(pk=new.pk).name == "Ada Lovelace"


def test_refused_merge_shows_the_reason_and_changes_nothing(
    staff_client: Client, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    data = merge_form(old, [old, new], keep_user_id=new)
    response = staff_client.post(reverse("conflicts-merge-confirm"), data)
    assert response.status_code == 200
    assert (
        "This merge cannot be done: the survivor keeps its own userId 'u-old'; to keep "
        "'u-new', choose that user as the survivor." in words_of(response)
    )
    assert not conflict_entries().exists()
    assert Profile.objects.get(pk=new.pk).merged_into_id is None

    # The survivor must take part, and at least two users must.
    data = merge_form(old, [old, new], include=[str(new.pk)])
    response = staff_client.post(reverse("conflicts-merge-preview"), data)
    assert "The survivor must take part in the merge." in text_of(response)

    # Users merged since the page was opened are refused by name.
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    again = staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    assert "u-new was already merged into another user" in text_of(again)


def test_merge_page_with_nothing_to_merge_goes_back(
    staff_client: Client, twins: tuple[Profile, Profile]
) -> None:
    response = staff_client.get(reverse("conflicts-merge"), {"email": "nobody@x.co"}, follow=True)
    assert response.redirect_chain == [(reverse("conflicts"), 302)]
    assert messages_of(response) == ["Nothing to merge: fewer than two users are left to compare."]
    old, new = twins
    by_ids = staff_client.get(reverse("conflicts-merge"), {"ids": f"{new.pk},{old.pk},x"})
    assert [c.profile for c in by_ids.context["columns"]] == [old, new]
    # One of them deleted while the page was open: the preview sends the whole page back.
    data = merge_form(old, [old, new])
    staff_client.post(reverse("user-delete", args=[new.pk]), {})
    gone = staff_client.post(
        reverse("conflicts-merge-preview"), data, headers={"HX-Request": "true"}
    )
    assert gone["HX-Redirect"] == reverse("conflicts")


# Audit log and undo ---------------------------------------------------------------------------


def test_undo_from_the_audit_log_restores_the_users(
    staff_client: Client, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    staff_client.post(
        reverse("conflicts-merge-confirm"), merge_form(old, [old, new], keep_name=new)
    )
    entry = AuditEntry.objects.get(action=AuditAction.MERGE)
    log = staff_client.get(reverse("audit-list"))
    page = text_of(log)
    assert "Merged u-new into u-old (3 events moved)" in page
    assert reverse("audit-undo", args=[entry.pk]) in page

    detail = text_of(staff_client.get(reverse("audit-detail", args=[entry.pk])))
    assert "What moved to" in detail and "anon-2" in detail and "g-new-only" in detail
    assert "Ada L" in detail  # the survivor's name before the merge

    response = staff_client.post(
        reverse("audit-undo", args=[entry.pk]), {"next": reverse("audit-list")}, follow=True
    )
    assert response.redirect_chain == [(reverse("audit-list"), 302)]
    assert messages_of(response) == ["Undid: Merged u-new into u-old (3 events moved)"]
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.name, old.billing_id, new.merged_into_id) == ("Ada L", None, None)
    assert Event.objects.get(event="New Thing").profile_id == new.pk
    assert AnonymousId.objects.get(value="anon-2").profile_id == new.pk
    assert "undone" in text_of(response)
    assert AuditEntry.objects.filter(action=AuditAction.MERGE_UNDONE).count() == 1

    again = staff_client.post(reverse("audit-undo", args=[entry.pk]), follow=True)
    assert messages_of(again) == ["This merge cannot be undone: this merge was already undone."]


def test_audit_log_says_why_a_merge_cannot_be_undone(
    staff_client: Client, post_ingest: IngestPost, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    send(post_ingest, [{"type": "identify", "userId": "u-third", "traits": {"email": "t@x.co"}}])
    third = Profile.objects.get(user_id="u-third")
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(third, [old, third]))
    first, second = AuditEntry.objects.filter(action=AuditAction.MERGE).order_by("id")
    page = text_of(staff_client.get(reverse("audit-list")))
    assert (
        "Cannot undo: the surviving user was merged into another user since: undo that merge "
        "first." in page
    )
    assert reverse("audit-undo", args=[first.pk]) not in page
    assert reverse("audit-undo", args=[second.pk]) in page
    # Forcing it anyway: the service refuses, and says why.
    forced = staff_client.post(reverse("audit-undo", args=[first.pk]), follow=True)
    assert messages_of(forced) == [
        "This merge cannot be undone: u-old was merged into another user since: undo that "
        "merge first."
    ]


def conflict_entries() -> Any:
    """Audit entries of conflict work, leaving out the fixtures' own (a source created)."""
    return AuditEntry.objects.exclude(action="source_changed")


def test_audit_log_filters_by_action(staff_client: Client, twins: tuple[Profile, Profile]) -> None:
    old, new = twins
    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    staff_client.post(reverse("user-delete", args=[old.pk]), {})
    everything = staff_client.get(reverse("audit-list"))
    # The source the fixtures made is in the log too, as "source_changed".
    shown = [e.action for e, _ in everything.context["rows"]]
    assert [a for a in shown if a != "source_changed"] == ["delete", "merge"]
    deletes = staff_client.get(reverse("audit-list"), {"action": "delete"})
    assert [e.action for e, _ in deletes.context["rows"]] == ["delete"]
    fragment = staff_client.get(
        reverse("audit-list"), {"action": "merge"}, headers={"HX-Request": "true"}
    )
    assert text_of(fragment).lstrip().startswith('<div id="audit-table"')
    # The merge's survivor was deleted since: the merge can no longer be undone.
    assert "the surviving user was deleted since" in text_of(fragment)


# Merge all ------------------------------------------------------------------------------------


def test_merge_all_previews_counts_then_runs_as_a_job(
    staff_client: Client, post_ingest: IngestPost
) -> None:
    make_conflicts(post_ingest)
    preview = staff_client.get(reverse("conflicts-merge-all"))
    page = text_of(preview)
    assert '<strong id="bulk-groups">2</strong>' in page
    assert '<strong id="bulk-users">5</strong>' in page
    assert "3 will be merged away" in page
    assert "Merge 2 groups" in page

    started = staff_client.post(reverse("conflicts-merge-all"))
    job = Job.objects.get(kind=JobKind.BULK_MERGE)
    assert started["Location"] == reverse("conflicts-job", args=[job.pk])
    jobs.run_job(job.pk)
    result = text_of(staff_client.get(started["Location"]))
    assert '<strong id="result-merged">2</strong>' in result
    assert sorted(str(p.user_id) for p in Profile.objects.filter(merged_into__isnull=True)) == [
        "u0",
        "u3",
        "u5",
    ]
    after = text_of(staff_client.get(reverse("conflicts")))
    assert "No two users share an email." in after
    assert AuditEntry.objects.filter(action=AuditAction.MERGE).count() == 2


# The user's page ------------------------------------------------------------------------------


def test_user_page_flags_billing_ids_shared_emails_and_merges(
    staff_client: Client, post_ingest: IngestPost, twins: tuple[Profile, Profile]
) -> None:
    old, new = twins
    send(
        post_ingest,
        [{"type": "identify", "userId": "u-bad", "traits": {"billingId": "sub_123"}}],
    )
    bad = Profile.objects.get(user_id="u-bad")
    page = text_of(staff_client.get(reverse("user-detail", args=[bad.pk])))
    assert "invalid: not a Stripe (cus_…) or Chargebee customer id" in page
    assert "billing id 'sub_123' is not a Stripe (cus_...) or Chargebee customer id" in page

    page = text_of(staff_client.get(reverse("user-detail", args=[old.pk])))
    assert '<span class="flag warn">missing</span>' in page
    assert "Shares its email with 1 other user." in page
    assert f"{reverse('conflicts-merge')}?email=ada%40x.co" in page
    assert reverse("user-delete", args=[old.pk]) in page

    staff_client.post(reverse("conflicts-merge-confirm"), merge_form(old, [old, new]))
    survivor = text_of(staff_client.get(reverse("user-detail", args=[old.pk])))
    assert "Shares its email" not in survivor
    assert f'<dd id="absorbed"><a href="/users/{new.pk}/">u-new</a></dd>' in survivor
    absorbed = text_of(staff_client.get(reverse("user-detail", args=[new.pk])))
    assert "Merged into" in absorbed and reverse("user-delete", args=[new.pk]) not in absorbed


def test_every_conflict_page_requires_login(client: Client, twins: tuple[Profile, Profile]) -> None:
    old, _ = twins
    for url in (
        reverse("conflicts"),
        reverse("conflicts-export"),
        reverse("conflicts-merge") + "?email=ada@x.co",
        reverse("conflicts-merge-all"),
        reverse("conflicts-import"),
        reverse("user-delete", args=[old.pk]),
        reverse("audit-list"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_a_viewer_sees_the_flags_but_no_merge_or_delete(
    client: Client, make_member: MakeMember, twins: tuple[Profile, Profile]
) -> None:
    old, _ = twins
    client.force_login(make_member(username="reader", role="viewer"))
    page = text_of(client.get(reverse("user-detail", args=[old.pk])))
    assert "Shares its email with 1 other user." in page
    assert '<span class="flag warn">missing</span>' in page
    assert reverse("user-delete", args=[old.pk]) not in page
    assert reverse("conflicts-merge") not in page

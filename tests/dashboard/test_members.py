"""Removing a member from the Members page: admins only, by POST with CSRF, from a confirm panel;
never yourself, a superuser or the last admin; audited, and the removed member signed out."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from dashboard.members import MemberRefused, member_remove
from dashboard.roles import ADMIN, OPERATOR, VIEWER
from destinations.models import AuditEntry
from tests.helpers.members import MakeMember

pytestmark = pytest.mark.django_db


def signed_in(user: User, **client_options: Any) -> Client:
    client = Client(**client_options)
    client.force_login(user)
    return client


def remove(client: Client, member: User) -> Any:
    return client.post(reverse("member-remove", args=[member.pk]), follow=True)


def page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


def test_an_admin_removes_a_member_who_is_signed_out_at_once(make_member: MakeMember) -> None:
    boss = make_member(username="boss", role=ADMIN)
    val = make_member(username="val", role=OPERATOR)
    vals_browser = signed_in(val)
    assert vals_browser.get(reverse("conflicts")).status_code == 200

    response = remove(signed_in(boss), val)
    assert "Removed val: they can no longer sign in." in page_text(response)
    assert ">val</td>" not in page_text(response)  # no longer listed
    val.refresh_from_db()
    assert not val.is_active and not val.groups.exists()
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.summary) == (boss, "Removed member 'val' (was operator)")
    assert entry.data == {"user": val.pk, "before": OPERATOR, "removed": True}
    # Their open session no longer works, nor does signing in again.
    assert vals_browser.get(reverse("conflicts"))["Location"].startswith("/login/")
    assert not Client().login(username="val", password="correct horse battery")


def test_you_cannot_remove_yourself(make_member: MakeMember) -> None:
    boss = make_member(username="boss", role=ADMIN)
    make_member(username="other-admin", role=ADMIN)
    response = remove(signed_in(boss), boss)
    assert "Could not remove boss: you cannot remove yourself; ask another admin." in page_text(
        response
    )
    boss.refresh_from_db()
    assert boss.is_active and not AuditEntry.objects.exists()


def test_the_last_admin_cannot_be_removed(make_member: MakeMember) -> None:
    first = make_member(username="first", role=ADMIN)
    second = make_member(username="second", role=ADMIN)
    member_remove(second, actor=None)  # e.g. removed by another admin a moment before
    with pytest.raises(MemberRefused) as refused:
        member_remove(first, actor=None)
    assert str(refused.value) == "first is the last admin; make another member admin first"
    first.refresh_from_db()
    assert first.is_active
    # A viewer or operator may go even when one admin is left.
    member_remove(make_member(username="viewer", role=VIEWER), actor=None)


def test_a_superuser_or_a_member_removed_already_is_refused(make_member: MakeMember) -> None:
    boss = make_member(username="boss", role=ADMIN)
    root = get_user_model().objects.create_superuser("root", "root@example.com", "x" * 20)
    client = signed_in(boss)
    assert (
        "Could not remove root: root is a superuser and always an admin; only Django's admin "
        "can remove a superuser." in page_text(remove(client, root))
    )
    gone = make_member(username="gone", role=VIEWER)
    remove(client, gone)
    assert "Could not remove gone: gone was removed already." in page_text(remove(client, gone))
    assert AuditEntry.objects.count() == 1


def test_only_an_admin_removes_and_only_by_post_with_csrf(make_member: MakeMember) -> None:
    boss = make_member(username="boss", role=ADMIN)
    val = make_member(username="val", role=VIEWER)
    operator = make_member(username="olga", role=OPERATOR)
    url = reverse("member-remove", args=[val.pk])
    assert signed_in(operator).post(url).status_code == 403
    assert signed_in(boss).get(url).status_code == 405
    assert signed_in(boss, enforce_csrf_checks=True).post(url).status_code == 403
    val.refresh_from_db()
    assert val.is_active and not AuditEntry.objects.exists()


def test_the_page_offers_removal_in_a_confirm_panel_except_for_yourself(
    make_member: MakeMember,
) -> None:
    boss = make_member(username="boss", role=ADMIN)
    val = make_member(username="val", role=VIEWER)
    page = page_text(signed_in(boss).get(reverse("members")))
    panel = page.split('<summary class="button danger">Remove…</summary>')
    assert len(panel) == 2  # val only: not yourself
    assert f'action="{reverse("member-remove", args=[val.pk])}" class="confirm-panel"' in panel[1]
    assert 'name="csrfmiddlewaretoken"' in panel[1].split("</form>")[0]
    assert reverse("member-remove", args=[boss.pk]) not in page


def test_a_removed_member_added_again_gets_the_same_account_back(make_member: MakeMember) -> None:
    boss = make_member(username="boss", role=ADMIN)
    val = make_member(username="val", role=OPERATOR)
    client = signed_in(boss)
    remove(client, val)
    response = client.post(
        reverse("member-new"),
        {"username": "val", "password": "another long passphrase", "role": VIEWER},
        follow=True,
    )
    assert "Added val." in page_text(response)
    val.refresh_from_db()
    assert val.is_active and list(val.groups.values_list("name", flat=True)) == [VIEWER]
    assert Client().login(username="val", password="another long passphrase")
    assert AuditEntry.objects.latest("id").summary == "Added member 'val' again as viewer"
    # A member who is still there is not added twice.
    again = client.post(
        reverse("member-new"),
        {"username": "VAL", "password": "yet another passphrase x", "role": ADMIN},
    )
    assert "a member named 'VAL' already exists" in page_text(again)

"""Every URL as each role and as an anonymous visitor: what each may read and change."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from dashboard.roles import ADMIN, OPERATOR, PUBLIC, PUBLIC_PREFIXES, RANK, URL_ROLES, VIEWER
from destinations.models import AuditEntry, Destination, Source
from tests.helpers.members import MakeMember
from tests.helpers.urls import dashboard_urls

pytestmark = pytest.mark.django_db


def is_public(name: str) -> bool:
    return name in PUBLIC or name.startswith(PUBLIC_PREFIXES)


def test_every_url_has_a_declared_role() -> None:
    undeclared = [
        name for name, _ in dashboard_urls() if not is_public(name) and name not in URL_ROLES
    ]
    assert undeclared == [], "add these URL names to dashboard.roles.URL_ROLES"


def test_anonymous_visitors_are_sent_to_log_in() -> None:
    client = Client()
    for name, path in dashboard_urls():
        if is_public(name):
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            assert response.status_code == 302, (name, method, response.status_code)
            assert response["Location"].startswith("/login/"), (name, method)


@pytest.mark.parametrize("role", [VIEWER, OPERATOR, ADMIN])
def test_each_role_reads_and_changes_only_what_it_may(role: str, make_member: MakeMember) -> None:
    client = Client()
    client.force_login(make_member(username=f"m-{role}", role=role))
    for name, path in dashboard_urls():
        if is_public(name) or name == "logout":
            continue
        read, write = URL_ROLES[name]
        for method, needed in (("get", read), ("post", write)):
            response = getattr(client, method)(path)
            allowed = RANK[role] >= RANK[needed]
            if allowed:
                assert response.status_code != 403, (role, name, method)
            else:
                assert response.status_code == 403, (role, name, method, response.status_code)
                assert f"needs the <strong>{needed}</strong> role" in response.content.decode()


def test_actions_disappear_for_viewers(
    make_member: MakeMember, refiner_destination: Destination
) -> None:
    client = Client()
    client.force_login(make_member(username="v", role=VIEWER))
    page = client.get(f"/destinations/{refiner_destination.pk}/").content.decode()
    assert "Retry all failed" not in page
    assert "Edit" not in page
    client.force_login(make_member(username="a", role=ADMIN))
    page = client.get(f"/destinations/{refiner_destination.pk}/").content.decode()
    assert "Edit" in page


def test_member_roles_are_managed_by_admins_and_audited(make_member: MakeMember) -> None:
    admin = make_member(username="boss", role=ADMIN)
    viewer = make_member(username="val", role=VIEWER)
    client = Client()
    client.force_login(admin)
    response = client.post(f"/members/{viewer.pk}/role/", {"role": OPERATOR}, follow=True)
    assert "val is now operator." in response.content.decode()
    assert AuditEntry.objects.get().summary == "Changed val's role from viewer to operator"
    response = client.post(f"/members/{admin.pk}/role/", {"role": VIEWER}, follow=True)
    assert "you cannot change your own role" in response.content.decode()
    response = client.post(
        "/members/new/", {"username": "nia", "password": "a long passphrase here", "role": "admin"}
    )
    assert response.status_code == 302
    client.force_login(viewer)
    assert client.get("/members/").status_code == 403


def test_failed_logins_are_throttled(make_member: MakeMember, settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 3
    make_member(username="ada", password="the right passphrase")
    client = Client()
    for _ in range(3):
        response = client.post("/login/", {"username": "ada", "password": "wrong"})
        assert "Please enter a correct username and password" in response.content.decode()
        assert not response.wsgi_request.user.is_authenticated
    response = client.post("/login/", {"username": "ada", "password": "the right passphrase"})
    assert "Too many failed logins for this account from your address" in response.content.decode()
    assert not response.wsgi_request.user.is_authenticated


def test_a_login_without_a_password_does_not_clear_the_count(
    make_member: MakeMember, settings: Any
) -> None:
    """Only a successful login clears the count: a form sent with the password left out (no
    password is checked) must not give an attacker a fresh set of tries."""
    settings.LOGIN_MAX_FAILURES = 3
    make_member(username="ada", password="the right passphrase")
    client = Client()
    for password in ("wrong", "wrong", "", "wrong"):
        client.post("/login/", {"username": "ada", "password": password})
    response = client.post("/login/", {"username": "ada", "password": "the right passphrase"})
    assert "Too many failed logins for this account from your address" in response.content.decode()
    assert not response.wsgi_request.user.is_authenticated


def test_security_headers(client: Client) -> None:
    response = client.get("/login/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Frame-Options"] == "DENY"


def test_key_changes_edits_and_retries_are_audited(
    make_member: MakeMember, refiner_destination: Destination, source: Source
) -> None:
    client = Client()
    client.force_login(make_member(username="boss", role=ADMIN))
    client.post(f"/sources/{source.pk}/rotate-key/")
    client.post(
        f"/destinations/{refiner_destination.pk}/edit/",
        {"name": "Refiner", "enabled": "on", "api_key": "rk_rotated_key_1234", "base_url": ""},
    )
    client.post(f"/destinations/{refiner_destination.pk}/toggle/")
    client.post(f"/destinations/{refiner_destination.pk}/retry-failed/")
    mine = AuditEntry.objects.filter(actor__username="boss").order_by("id")
    summaries = list(mine.values_list("summary", flat=True))
    assert summaries == [
        "Issued a new write key for source 'Web app'",
        "Changed destination 'Refiner' (new API Key)",
        "Disabled destination 'Refiner'",
        "Retried all 0 failed deliveries of 'Refiner'",
    ]
    assert not any("rk_rotated" in str(e.data) + e.summary for e in AuditEntry.objects.all())

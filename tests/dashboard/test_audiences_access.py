"""Who may do what with audiences (viewers read; operators build, preview and delete), and
forged editor fields: each gets a page, never an error."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from destinations.audiences.services import audience_create
from destinations.models import Audience
from tests.dashboard.audience_support import TRIAL, editor_data, words_of

pytestmark = pytest.mark.django_db

TRIALS = {"match": "all", "conditions": [{**TRIAL, "path": "traits.plan"}]}


def test_viewers_read_audiences_and_only_operators_change_them(
    client: Client, make_member: Any
) -> None:
    audience, _ = audience_create(name="Trials", subject="users", definition=TRIALS)
    client.force_login(make_member(username="vera", role="viewer"))
    assert client.get("/audiences/").status_code == 200
    page = client.get(f"/audiences/{audience.pk}/")
    assert page.status_code == 200
    assert "Edit" not in words_of(page) and "Delete…" not in words_of(page)
    assert "New audience" not in words_of(client.get("/audiences/"))
    for path in ("/audiences/new/", f"/audiences/{audience.pk}/edit/",
                 f"/audiences/{audience.pk}/delete/", "/audiences/key/?name=x"):  # fmt: skip
        assert client.get(path).status_code == 403, path
    for path in ("/audiences/new/", "/audiences/preview/", f"/audiences/{audience.pk}/edit/",
                 f"/audiences/{audience.pk}/delete/"):  # fmt: skip
        response = client.post(path, editor_data(name="Taken over", tell="yes"))
        assert response.status_code == 403, path
        assert "needs the <strong>operator</strong> role" in response.content.decode()
    assert list(Audience.objects.values_list("name", flat=True)) == ["Trials"]


@pytest.mark.parametrize(
    "extra",
    [
        {"c1-type": "nonsense"},
        {"c999999-type": "event", "c7-2-type": "trait"},
        {"add": "c9:event"},
        {"add": "bogus"},
        {"remove": "c1-1-1"},
        {"add_where": "c1"},
        {"remove_where": "c1:x"},
        {"remove_where": "c1:99999999999999999999"},
        {"match": "some"},
        {"c1-op": "regex"},
        {"audience": "not-a-number"},
    ],
)
def test_forged_fields_get_a_page_never_an_error(operator: Client, extra: dict[str, str]) -> None:
    for path in ("/audiences/new/", "/audiences/preview/"):
        response = operator.post(path, {**editor_data(), **extra})
        assert response.status_code in (200, 302), (path, extra, response.status_code)

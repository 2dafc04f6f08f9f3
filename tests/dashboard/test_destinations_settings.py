"""Destinations in the dashboard: pages need a login and CSRF, the settings form generated
from the connector keeps secrets write-only, and the per-destination rate limit."""

from __future__ import annotations

import logging

import pytest
from django.test import Client
from django.urls import reverse

from destinations.models import Destination, Job
from destinations.standins.refiner import FakeRefiner
from tests.helpers.members import MakeMember
from tests.helpers.pages import text_of

LIVE_KEY = "rk_live_5ecret_Key_7788"


# --- access -------------------------------------------------------------------------------


def test_every_destination_page_requires_login(
    client: Client, refiner_destination: Destination
) -> None:
    job = Job.objects.create(kind="retry_failed", params={"destination_id": refiner_destination.pk})
    pk = refiner_destination.pk
    for url in [
        reverse("destination-list"),
        reverse("destination-new"),
        reverse("destination-new-kind", args=["refiner"]),
        reverse("destination-delivery", args=[pk]),
        reverse("destination-edit", args=[pk]),
        reverse("job-detail", args=[job.pk]),
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url
    for url in [
        reverse("destination-toggle", args=[pk]),
        reverse("destination-resume", args=[pk]),
        reverse("destination-retry-failed", args=[pk]),
        reverse("destination-test", args=[pk]),
    ]:
        assert client.post(url).status_code == 302, url
    refiner_destination.refresh_from_db()
    assert refiner_destination.enabled is True


def test_actions_need_csrf(refiner_destination: Destination, make_member: MakeMember) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_member())
    response = client.post(reverse("destination-toggle", args=[refiner_destination.pk]))
    assert response.status_code == 403
    refiner_destination.refresh_from_db()
    assert refiner_destination.enabled is True


# --- the settings form --------------------------------------------------------------------


def test_new_destination_form_is_generated_from_the_connector(staff_client: Client) -> None:
    choose = staff_client.get(reverse("destination-new"))
    assert reverse("destination-new-kind", args=["refiner"]) in choose.content.decode()
    page = staff_client.get(reverse("destination-new-kind", args=["refiner"]))
    body = page.content.decode()
    form = page.context["form"]
    assert [form[name].label for name in ("api_key", "base_url")] == ["API Key", "Base URL"]
    assert 'value="https://api.refiner.io/v1"' in body
    assert 'type="password" name="api_key"' in body
    assert reverse("destination-test-new", args=["refiner"]) in body


def test_create_destination_stores_the_key_encrypted_and_never_shows_it(
    staff_client: Client, fake_refiner: FakeRefiner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = staff_client.post(
        reverse("destination-new-kind", args=["refiner"]),
        {"name": "Refiner prod", "enabled": "on", "api_key": LIVE_KEY, "base_url": ""},
        follow=True,
    )
    destination = Destination.objects.get(name="Refiner prod")
    assert response.redirect_chain == [
        (reverse("destination-delivery", args=[destination.pk]), 302)
    ]
    assert "Destination 'Refiner prod' created." in text_of(response)
    assert destination.kind == "refiner" and destination.enabled
    assert destination.settings == {"base_url": "https://api.refiner.io/v1"}
    assert destination.secrets == {"api_key": LIVE_KEY}
    assert LIVE_KEY not in destination.secrets_encrypted
    assert "5ecret" not in destination.secrets_encrypted
    assert LIVE_KEY not in response.content.decode()

    edit = staff_client.get(reverse("destination-edit", args=[destination.pk]))
    body = text_of(edit)
    assert LIVE_KEY not in body
    assert 'placeholder="••••••••7788"' in body
    assert "Leave blank to keep" in body
    assert LIVE_KEY not in caplog.text


def test_short_key_shows_no_characters_at_all(
    staff_client: Client, refiner_destination: Destination
) -> None:
    body = text_of(staff_client.get(reverse("destination-edit", args=[refiner_destination.pk])))
    assert 'placeholder="••••••••"' in body
    assert "rk_test" not in body


def test_create_without_key_and_duplicate_name_are_refused(
    staff_client: Client, refiner_destination: Destination
) -> None:
    url = reverse("destination-new-kind", args=["refiner"])
    missing = staff_client.post(url, {"name": "Another", "base_url": ""})
    assert missing.context["form"].errors == {"api_key": ["This field is required."]}
    duplicate = staff_client.post(url, {"name": "Refiner", "api_key": "rk_x", "base_url": ""})
    assert "A destination named 'Refiner' already exists." in text_of(duplicate)
    bad_url = staff_client.post(url, {"name": "Third", "api_key": "rk_x", "base_url": "not a url"})
    assert bad_url.context["form"].errors == {"base_url": ["Enter a valid URL."]}
    assert Destination.objects.count() == 1


def test_edit_with_the_key_left_blank_keeps_it(
    staff_client: Client, refiner_destination: Destination, fake_refiner: FakeRefiner
) -> None:
    url = reverse("destination-edit", args=[refiner_destination.pk])
    staff_client.post(
        url,
        {"name": "Refiner EU", "enabled": "on", "api_key": "", "base_url": fake_refiner.base_url},
    )
    refiner_destination.refresh_from_db()
    assert refiner_destination.name == "Refiner EU"
    assert refiner_destination.secrets == {"api_key": "rk_test"}

    staff_client.post(
        url,
        {"name": "Refiner EU", "enabled": "on", "api_key": LIVE_KEY, "base_url": ""},
    )
    refiner_destination.refresh_from_db()
    assert refiner_destination.secrets == {"api_key": LIVE_KEY}
    assert refiner_destination.settings == {"base_url": "https://api.refiner.io/v1"}


# --- the rate limit ---------------------------------------------------------------------------


def test_the_rate_limit_field_names_each_kinds_default(staff_client: Client) -> None:
    refiner = staff_client.get(reverse("destination-new-kind", args=["refiner"]))
    field = refiner.context["form"]["rate_limit_per_minute"]
    assert field.label == "Rate limit (requests per minute)"
    assert field.help_text == "Leave blank for Refiner's default, 4,000 requests per minute."
    assert 'type="number" name="rate_limit_per_minute"' in refiner.content.decode()
    kana = staff_client.get(reverse("destination-new-kind", args=["kana"]))
    help_text = kana.context["form"]["rate_limit_per_minute"].help_text
    assert help_text == "Leave blank for Kana's default: no limit."


def test_a_rate_limit_is_set_changed_and_cleared(
    staff_client: Client, fake_refiner: FakeRefiner
) -> None:
    form = {"name": "Refiner", "enabled": "on", "api_key": LIVE_KEY, "base_url": ""}
    staff_client.post(
        reverse("destination-new-kind", args=["refiner"]), {**form, "rate_limit_per_minute": "600"}
    )
    destination = Destination.objects.get()
    assert destination.rate_limit_per_minute == 600
    edit_url = reverse("destination-edit", args=[destination.pk])
    assert staff_client.get(edit_url).context["form"]["rate_limit_per_minute"].value() == 600

    staff_client.post(edit_url, {**form, "api_key": "", "rate_limit_per_minute": "1500"})
    destination.refresh_from_db()
    assert destination.rate_limit_per_minute == 1500
    staff_client.post(edit_url, {**form, "api_key": "", "rate_limit_per_minute": ""})
    destination.refresh_from_db()
    assert destination.rate_limit_per_minute == 0  # the connector's default again
    assert staff_client.get(edit_url).context["form"]["rate_limit_per_minute"].value() is None


@pytest.mark.parametrize("typed", ["0", "-5", "abc", "2.5", "1000001"])
def test_a_rate_limit_must_be_a_positive_whole_number(
    staff_client: Client, refiner_destination: Destination, typed: str
) -> None:
    response = staff_client.post(
        reverse("destination-edit", args=[refiner_destination.pk]),
        {"name": "Renamed", "enabled": "on", "api_key": "", "base_url": "",
         "rate_limit_per_minute": typed},
    )  # fmt: skip
    [error] = response.context["form"].errors["rate_limit_per_minute"]
    assert error in (
        "Enter a whole number of requests per minute, 1 or more, or leave it blank.",
        "Ensure this value is less than or equal to 1000000.",
    )
    refiner_destination.refresh_from_db()
    assert refiner_destination.name == "Refiner" and refiner_destination.rate_limit_per_minute == 0


def test_a_refused_save_keeps_the_stored_rate_limit(
    staff_client: Client, refiner_destination: Destination
) -> None:
    Destination.objects.filter(pk=refiner_destination.pk).update(rate_limit_per_minute=50)
    response = staff_client.post(
        reverse("destination-edit", args=[refiner_destination.pk]),
        {"name": "Refiner", "enabled": "on", "api_key": "", "base_url": "ftp://nope",
         "rate_limit_per_minute": "900"},
    )  # fmt: skip
    assert response.context["form"].errors
    refiner_destination.refresh_from_db()
    assert refiner_destination.rate_limit_per_minute == 50

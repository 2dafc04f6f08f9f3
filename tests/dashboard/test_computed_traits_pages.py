"""The computed trait pages: operators make, change and delete them; viewers read; a bad
definition is shown beside the form, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from destinations.delivery.services import destination_create
from destinations.models import AuditEntry, ComputedTrait, Job, JobKind
from tests.dashboard.audience_support import words_of

pytestmark = pytest.mark.django_db


def form(**extra: Any) -> dict[str, Any]:
    return {"name": "Reports exported", "kind": "count", "event": "Report Exported",
            "property": "", "within_days": "30", **extra}  # fmt: skip


def test_an_operator_makes_changes_and_deletes_a_computed_trait(operator: Client) -> None:
    refiner = destination_create(
        kind="refiner", name="Refiner", settings_values={}, secret_values={"api_key": "rk"}
    )
    kana = destination_create(
        kind="kana", name="Kana", settings_values={}, secret_values={"api_key": "prv"}
    )
    page = operator.get("/computed-traits/new/")
    assert "Refiner" in words_of(page)
    assert f'value="{kana.pk}"' not in page.content.decode()  # Kana is not offered
    data = form(destinations=[str(refiner.pk)], where_path_1="properties.format",
                where_op_1="equals", where_value_1="csv")  # fmt: skip
    response = operator.post("/computed-traits/new/", data)
    assert response.status_code == 302
    trait = ComputedTrait.objects.get()
    assert trait.key == "reports_exported"
    assert trait.definition == {
        "kind": "count", "event": "Report Exported", "within_days": 30,
        "where": [{"path": "properties.format", "op": "equals", "value": "csv"}],
    }  # fmt: skip
    assert list(trait.targets.values_list("destination_id", flat=True)) == [refiner.pk]
    assert Job.objects.filter(kind=JobKind.COMPUTED_TRAIT, params__trait_id=trait.pk).exists()
    listing = words_of(operator.get("/computed-traits/"))
    assert "Reports exported reports_exported number of times 'Report Exported'" in listing

    response = operator.post(
        f"/computed-traits/{trait.pk}/edit/",
        form(name="Renamed?", kind="last_value", property="properties.format"),
    )
    assert response.status_code == 302
    trait.refresh_from_db()
    assert trait.name == "Reports exported"  # the name (and key) stay
    assert trait.definition["kind"] == "last_value"
    assert not trait.targets.exists()

    assert operator.post(f"/computed-traits/{trait.pk}/delete/").status_code == 302
    assert not ComputedTrait.objects.exists()
    assert AuditEntry.objects.filter(summary__startswith="Deleted computed trait").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (form(kind="last_value"), "name the property, like properties.plan"),
        (form(where_path_1="", where_op_1="gt", where_value_1="x"), "where 1: path must"),
        (form(where_path_1="properties.n", where_op_1="gt", where_value_1="x"),
         "where 1: is greater than needs a number"),
        (form(name="!!!"), "give the computed trait a name with a letter or digit"),
        (form(within_days="0"), "Ensure this value is greater than or equal to 1."),
        (form(kind="median"), "Select a valid choice."),
        (form(event="x" * 300), "Ensure this value has at most 255 characters"),
    ],
)  # fmt: skip
def test_a_bad_trait_is_refused_beside_the_form(
    operator: Client, data: dict[str, Any], message: str
) -> None:
    response = operator.post("/computed-traits/new/", data)
    assert response.status_code == 200
    assert message in words_of(response)
    assert not ComputedTrait.objects.exists()


def test_viewers_read_and_cannot_change(client: Client, make_member: Any) -> None:
    trait = ComputedTrait.objects.create(
        name="Seen", key="seen",
        definition={"kind": "last_seen", "event": "x", "where": [], "within_days": None},
    )  # fmt: skip
    client.force_login(make_member(username="vera", role="viewer"))
    assert client.get("/computed-traits/").status_code == 200
    assert "New computed trait" not in words_of(client.get("/computed-traits/"))
    assert client.post("/computed-traits/new/", form()).status_code == 403
    assert client.post(f"/computed-traits/{trait.pk}/delete/").status_code == 403
    assert ComputedTrait.objects.count() == 1

"""Management commands used for automation."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from destinations.models import Destination

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_adddestination_prints_the_id_last_and_encrypts_the_key() -> None:
    output = run("adddestination", "refiner", "--name", "Refiner", "--api-key", "rk_secret_1")
    destination = Destination.objects.get()
    assert output.strip().splitlines()[-1] == str(destination.pk)
    assert destination.settings == {"base_url": "https://api.refiner.io/v1"}
    assert destination.secrets == {"api_key": "rk_secret_1"}
    assert "rk_secret_1" not in destination.secrets_encrypted


def test_adddestination_reads_a_secret_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("REFINER_KEY", "rk_from_env")
    run(
        "adddestination", "refiner", "--name", "R", "--api-key-env", "REFINER_KEY",
        "--base-url", "http://127.0.0.1:9/v1",
    )  # fmt: skip
    destination = Destination.objects.get()
    assert destination.secrets == {"api_key": "rk_from_env"}
    assert destination.settings["base_url"] == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--name", "R"), "API Key required for a Refiner destination"),
        (("--name", "R", "--api-key-env", "NOT_SET_ANYWHERE"), "NOT_SET_ANYWHERE is not set"),
    ],
)
def test_adddestination_refuses_incomplete_settings(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("adddestination", "refiner", *args)
    assert not Destination.objects.exists()


def test_adddestination_refuses_a_duplicate_name() -> None:
    run("adddestination", "refiner", "--name", "R", "--api-key", "k1")
    with pytest.raises(CommandError, match="a destination named 'R' already exists"):
        run("adddestination", "refiner", "--name", "R", "--api-key", "k2")
    assert Destination.objects.count() == 1


def test_adddestination_webhook_takes_its_defaults_and_refuses_bad_values() -> None:
    run("adddestination", "webhook", "--name", "W", "--url", "https://hooks.example.com/in")
    assert Destination.objects.get().settings["trigger"] == "events"
    with pytest.raises(CommandError, match="invalid choice: 'nope'"):
        run("adddestination", "webhook", "--name", "X", "--url", "https://h.example/",
            "--trigger", "nope")  # fmt: skip
    with pytest.raises(CommandError, match="Signing secret must be whsec_"):
        run("adddestination", "webhook", "--name", "Y", "--url", "https://h.example/",
            "--signing-secret", "plain text")  # fmt: skip


def test_adddestination_sets_a_rate_limit() -> None:
    output = run(
        "adddestination", "refiner", "--name", "R", "--api-key", "k", "--rate-limit", "600"
    )
    destination = Destination.objects.get()
    assert destination.rate_limit_per_minute == 600
    assert "Added Refiner destination 'R', at most 600 requests per minute" in output
    run("adddestination", "kana", "--name", "K", "--api-key", "k")
    assert Destination.objects.get(name="K").rate_limit_per_minute == 0  # the default


@pytest.mark.parametrize("typed", ["0", "-3", "many", "1.5", "1000001"])
def test_adddestination_refuses_a_rate_limit_that_is_not_a_positive_number(typed: str) -> None:
    with pytest.raises(CommandError, match="not a whole number of requests per minute, 1 to"):
        run("adddestination", "refiner", "--name", "R", "--api-key", "k", "--rate-limit", typed)
    assert not Destination.objects.exists()


def test_adddestination_refuses_an_option_the_kind_does_not_have(monkeypatch: Any) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "t")
    for args, unknown in (
        (("kana", "--api-key", "k", "--base-url", "http://kana.internal/graphql"), "--base-url"),
        (("refiner", "--api-key", "k", "--auth-token-env", "HOOK_TOKEN"), "--auth-token-env"),
    ):
        with pytest.raises(CommandError) as refused:
            run("adddestination", *args, "--name", "K")
        message = str(refused.value)
        assert message.startswith(f"{args[0]} destinations have no {unknown}; their options are ")
        assert not Destination.objects.exists()
    with pytest.raises(CommandError) as refused:
        run("adddestination", "kana", "--name", "K", "--api-key", "k", "--base-url", "http://x/")
    assert str(refused.value) == (
        "kana destinations have no --base-url; their options are --name, --disabled, "
        "--rate-limit, --api-key, --api-key-env, --api-url"
    )
    run("adddestination", "kana", "--name", "K", "--api-key", "k", "--api-url", "http://x/graphql")
    assert Destination.objects.get().settings == {"api_url": "http://x/graphql"}

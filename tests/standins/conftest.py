"""Fixtures of the stand-in tests: a user with features in the fake Kana."""

from __future__ import annotations

import pytest

from destinations.standins.kana import FakeKana


@pytest.fixture
def ada(fake_kana: FakeKana) -> str:
    """A user and two features to record usage against."""
    fake_kana.add_user("ada", name="Ada")
    fake_kana.add_feature("exports", "Exports")
    fake_kana.add_feature("sso", "Single sign-on", type="BINARY")
    return "ada"

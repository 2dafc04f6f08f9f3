"""Fixtures of the identity tests: ``staff_client`` is an operator, the role that merges,
deletes and imports users."""

from __future__ import annotations

import pytest


@pytest.fixture
def staff_role() -> str:
    return "operator"

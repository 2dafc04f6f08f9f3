"""Fixtures of the delivery tests: the lease their workers hold claims for."""

from __future__ import annotations

import pytest

# Workers here hold their claims for 30 s, not the 4 s of TEST_DELIVERY_ENV: on a loaded machine
# (or a busy database) a claim can outlive 4 s while its worker is alive, and such a claim is
# sent again by design, which would blur the attempt counts these tests check. Only a worker
# that is going to be killed takes the short lease, so that its claims are recovered quickly.
LEASE = {"DELIVERY_LEASE_SECONDS": "30"}


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Every worker here takes the long LEASE unless told otherwise."""
    return LEASE

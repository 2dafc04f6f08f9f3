"""The registry of kinds, the task names services send and the job table all resolve to real
code: they are strings, so only a test notices a name that no longer matches."""

from __future__ import annotations

import pytest
from celery import current_app

from destinations import dispatch
from destinations.delivery.contract import Connector
from destinations.jobs import RUNNERS, runner
from destinations.kinds import CONNECTORS, KINDS, connector_for, kind_choices
from destinations.models import Destination, JobKind


def test_every_registered_kind_loads_its_connector() -> None:
    for kind in KINDS:
        connector = CONNECTORS[kind.name]
        assert isinstance(connector, Connector)
        assert connector.kind == kind.name
    assert sorted(CONNECTORS) == sorted(k.name for k in KINDS)


def test_an_unknown_kind_has_no_connector() -> None:
    assert "fax" not in CONNECTORS
    with pytest.raises(LookupError, match="fax"):
        connector_for("fax")


def test_destination_kinds_are_the_registry() -> None:
    field = Destination._meta.get_field("kind")
    assert list(field.choices or []) == kind_choices()
    assert [value for value, _ in kind_choices()] == [k.name for k in KINDS]


def test_every_task_name_sent_is_a_registered_task() -> None:
    import destinations.tasks  # noqa: F401  (registers them, as the worker does)

    assert set(current_app.tasks) >= dispatch.TASK_NAMES


def test_sending_an_unknown_task_is_refused_before_the_broker() -> None:
    with pytest.raises(LookupError, match="no task named"):
        dispatch.send("destinations.nope")


def test_every_job_kind_has_a_runner() -> None:
    assert set(RUNNERS) == set(JobKind.values)
    for kind in JobKind.values:
        assert callable(runner(kind))
    with pytest.raises(ValueError, match="unknown job kind"):
        runner("nope")

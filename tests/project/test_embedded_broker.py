"""The embedded broker only ever hands a worker whole messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kombu import Connection
from kombu.transport.virtual import Empty

from dashboard.project.broker import Transport


@pytest.fixture
def channel(tmp_path: Path) -> Any:
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path),
               "control_folder": str(tmp_path / "control"), "store_processed": False}  # fmt: skip
    with Connection("filesystem://", transport=Transport, transport_options=options) as conn:
        yield conn.default_channel


def test_messages_round_trip_and_leave_no_partial_files(channel: Any, tmp_path: Path) -> None:
    channel._put("jobs", {"body": "one"})
    channel._put("jobs", {"body": "two"})
    assert not list(tmp_path.glob("*.partial"))
    assert [channel._get("jobs")["body"], channel._get("jobs")["body"]] == ["one", "two"]


def test_a_message_still_being_written_is_not_taken(channel: Any, tmp_path: Path) -> None:
    # What a consumer sees while a producer is between writing and renaming.
    (tmp_path / "1_abc.jobs.msg.partial").write_bytes(b"")
    with pytest.raises(Empty):
        channel._get("jobs")
    channel._put("jobs", {"body": "whole"})
    assert channel._get("jobs") == {"body": "whole"}

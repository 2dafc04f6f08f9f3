"""Helpers the replay page tests share: a history stored before its destination existed, the
form as a browser posts it, and running a replay in this process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from destinations import jobs
from destinations.models import Job, Replay

HX = {"HX-Request": "true"}
USERS = ("u0", "u1", "u2")
PAGE_SKIP = "Kana does not accept page calls"
# What the Kana destination would be sent of the history, by range: (in range, sent).
EVERYTHING = {"identify": (3, 3), "track": (4, 3), "page": (3, 0)}
LAST_24_HOURS = {"track": (3, 3)}


def history() -> list[dict[str, Any]]:
    """Per user: an identify with a billing id 10 days ago, a page view 3 days ago and an
    export two hours ago; and one track no mapping rule maps, 40 days ago."""
    now = timezone.now()
    items: list[dict[str, Any]] = []
    for n, user in enumerate(USERS):
        items += [
            {"type": "identify", "userId": user, "messageId": f"id-{n}",
             "traits": {"email": f"{user}@example.com", "billingUserId": f"cus_{n}"},
             "timestamp": (now - timedelta(days=10, minutes=-n)).isoformat()},
            {"type": "page", "userId": user, "messageId": f"pg-{n}", "name": "Home",
             "timestamp": (now - timedelta(days=3, minutes=-n)).isoformat()},
            {"type": "track", "userId": user, "messageId": f"tr-{n}", "event": "Report Exported",
             "properties": {"pages": n + 1},
             "timestamp": (now - timedelta(hours=2, minutes=-n)).isoformat()},
        ]  # fmt: skip
    items.append(
        {"type": "track", "userId": "u0", "messageId": "old", "event": "Old Thing",
         "timestamp": (now - timedelta(days=40)).isoformat()}
    )  # fmt: skip
    return items


def form(**fields: Any) -> dict[str, Any]:
    """The replay form as posted: everything by default, nothing narrowed."""
    return {"range": "all", "since": "", "until": "", "names": "", **fields}


def run(replay: Replay) -> Job:
    """The replay's job run here, to its end (the runner's lanes are threads of this process)."""
    jobs.run_job(replay.job_id)
    return Job.objects.get(pk=replay.job_id)

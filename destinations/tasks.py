"""Celery tasks: another interface to the engine's services. They take ids, never rows."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.signals import worker_shutting_down

from destinations import jobs
from destinations.delivery import engine, sweeper
from destinations.replay import runner as replay_runner


@shared_task(name="destinations.deliver", ignore_result=True)
def deliver_task(delivery_ids: list[int]) -> dict[str, int]:
    stats = engine.deliver(delivery_ids)
    return {"claimed": stats.claimed, **stats.outcomes}


@shared_task(name="destinations.sweep", ignore_result=True)
def sweep_task() -> int:
    return sweeper.sweep()


@shared_task(name="destinations.run_job", ignore_result=True)
def run_job_task(job_id: int) -> None:
    jobs.run_job(job_id)


@shared_task(name="destinations.run_replay", ignore_result=True)
def run_replay_task(job_id: int) -> None:
    jobs.run_job(job_id)


@shared_task(name="destinations.delete_refiner_contacts", ignore_result=True)
def delete_refiner_contacts_task(entry_id: int, people: list[dict[str, str | None]]) -> None:
    from destinations.connectors.refiner.contacts import delete_contacts

    delete_contacts(entry_id, people)


@shared_task(name="destinations.reevaluate_audiences", ignore_result=True)
def reevaluate_audiences_task(profile_ids: list[int]) -> int:
    from destinations.audiences.live import reevaluate

    return reevaluate(profile_ids)


@shared_task(name="destinations.audience_windows", ignore_result=True)
def audience_windows_task() -> int:
    from destinations.audiences.windows import run_window_pass

    return run_window_pass()


@worker_shutting_down.connect
def stop_replays(**_: Any) -> None:
    """A replay runs for as long as it has events; a worker asked to stop must not wait for
    that. Its lanes stop after their page and the job is queued again."""
    replay_runner.shutting_down.set()

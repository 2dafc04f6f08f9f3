"""An audience's computation as a job with a progress bar: the first one after saving (every
member gets ``true``), and the one after an edit (only the resulting changes are sent)."""

from __future__ import annotations

from django.utils import timezone

from destinations.audiences.compute import Outcome, compute
from destinations.audiences.computed_traits import compute_trait
from destinations.audiences.live import forget_live
from destinations.models import Audience, ComputedTrait, Job


def run_computation(job: Job) -> None:
    audience = Audience.objects.filter(pk=job.params.get("audience_id")).first()
    if audience is None:  # deleted before its job ran
        return

    def progress(outcome: Outcome) -> None:
        Job.objects.filter(pk=job.pk).update(
            done=outcome.scanned,
            total=max(job.total, outcome.scanned),
            counters=counters(outcome),
            heartbeat_at=timezone.now(),
        )

    # Live from the start: users touched while this runs are re-evaluated as well, and the
    # confirmation under the audience's lock keeps the two from recording a change twice.
    Audience.objects.filter(pk=audience.pk, computed_at__isnull=True).update(
        computed_at=timezone.now()
    )
    forget_live()
    outcome = compute(audience, progress=progress)
    progress(outcome)


def counters(outcome: Outcome) -> dict[str, int]:
    return {
        "scanned": outcome.scanned,
        "entered": len(outcome.entered),
        "left": len(outcome.left),
        "synced": outcome.synced,
    }


def run_trait_computation(job: Job) -> None:
    trait = ComputedTrait.objects.filter(pk=job.params.get("trait_id")).first()
    if trait is None:
        return
    ComputedTrait.objects.filter(pk=trait.pk, computed_at__isnull=True).update(
        computed_at=timezone.now()
    )
    forget_live()
    outcome = compute_trait(trait)
    Job.objects.filter(pk=job.pk).update(
        done=outcome.scanned,
        total=max(job.total, outcome.scanned),
        counters={"scanned": outcome.scanned, "changed": len(outcome.changed),
                  "synced": outcome.synced},
        heartbeat_at=timezone.now(),
    )  # fmt: skip

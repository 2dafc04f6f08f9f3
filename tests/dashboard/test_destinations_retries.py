"""Retrying deliveries from the dashboard (one, or all failed as a job with progress) and
the deliveries, attempts and routing reasons on an event's page."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from destinations import jobs
from destinations.delivery import engine
from destinations.delivery.services import destination_create
from destinations.models import Delivery, DeliveryStatus, Destination, Event, Job, JobStatus, Source
from destinations.standins.refiner import FakeRefiner
from tests.helpers.delivery_rows import seed_attempt
from tests.helpers.ingest import IngestPost
from tests.helpers.pages import text_of


def test_retry_one_failed_delivery(staff_client: Client, seeded: dict[str, Any]) -> None:
    delivery = seeded["failed"][0]
    page = reverse("destination-delivery", args=[seeded["destination"].pk])
    response = staff_client.post(
        reverse("delivery-retry", args=[delivery.pk]), {"next": f"{page}?window=24h"}, follow=True
    )
    assert response.redirect_chain == [(f"{page}?window=24h", 302)]
    assert "Delivery to Refiner queued again." in text_of(response)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.reason == "" and delivery.finished_at is None
    again = staff_client.post(reverse("delivery-retry", args=[delivery.pk]), follow=True)
    assert "Only a failed delivery can be retried" in text_of(again)


def test_retry_is_offered_only_where_sending_again_can_change_the_outcome(
    staff_client: Client, source: Source, refiner_destination: Destination, post_ingest: IngestPost
) -> None:
    kana = destination_create(
        kind="kana",
        name="Kana",
        settings_values={"api_url": "http://127.0.0.1:9/graphql"},
        secret_values={"api_key": "prv_test"},
    )
    post_ingest("track", {"userId": "u1", "event": "Viewed Pricing", "messageId": "unmapped"})
    post_ingest("track", {"anonymousId": "a1", "event": "Viewed Pricing", "messageId": "anon"})
    bad_delta = {"featureId": "seats", "delta": 1.5}
    post_ingest("track", {"userId": "u1", "event": "Seat Added", "properties": bad_delta,
                          "messageId": "bad-delta"})  # fmt: skip
    anonymous = Delivery.objects.get(event__message_id="anon", destination=refiner_destination)
    engine.deliver([anonymous.pk])  # Refiner skips it when translating: no one to identify
    rows = {
        (d.event.message_id, d.destination.name): d
        for d in Delivery.objects.select_related("event", "destination")
    }
    assert rows["unmapped", "Kana"].reason.startswith("unmapped")
    assert rows["anon", "Kana"].reason == "rejected: Kana needs a userId"
    assert rows["anon", "Refiner"].reason.startswith("no userId or email")
    assert rows["bad-delta", "Kana"].status == DeliveryStatus.FAILED
    # Refiner refused the key once: fixing the key is what a retry is for.
    refused = rows["unmapped", "Refiner"]
    Delivery.objects.filter(pk=refused.pk).update(
        status=DeliveryStatus.FAILED, reason="Refiner refused the API key (HTTP 404): no"
    )

    def retry_form(delivery: Delivery) -> bool:
        page = text_of(staff_client.get(reverse("event-detail", args=[delivery.event_id])))
        return reverse("delivery-retry", args=[delivery.pk]) in page

    assert retry_form(refused)
    for key in (("unmapped", "Kana"), ("anon", "Kana"), ("anon", "Refiner"), ("bad-delta", "Kana")):
        assert not retry_form(rows[key]), key
        answer = staff_client.post(reverse("delivery-retry", args=[rows[key].pk]), follow=True)
        assert "Only a failed delivery can be retried" in text_of(answer)
        assert Delivery.objects.get(pk=rows[key].pk).status == rows[key].status
    unmapped_page = text_of(staff_client.get(reverse("event-detail", args=[refused.event_id])))
    rule_link = reverse("mapping-rule-new", args=[kana.pk]) + "?event=Viewed%20Pricing"
    assert f'<a href="{rule_link}">Add a mapping rule</a>' in unmapped_page

    # Retry all failed leaves out the failure over the event's content.
    staff_client.post(reverse("destination-retry-failed", args=[kana.pk]))
    assert Job.objects.get().total == 0
    assert Delivery.objects.get(pk=rows["bad-delta", "Kana"].pk).status == DeliveryStatus.FAILED


def test_retry_all_failed_runs_a_job_whose_progress_stops_polling_when_done(
    staff_client: Client, seeded: dict[str, Any]
) -> None:
    destination = seeded["destination"]
    started = staff_client.post(
        reverse("destination-retry-failed", args=[destination.pk]),
        headers={"HX-Request": "true"},
    )
    job = Job.objects.get()
    assert job.total == 8 and job.params == {"destination_id": destination.pk}
    assert job.created_by is not None and job.created_by.get_username() == "op"
    fragment = started.content.decode()
    assert fragment.lstrip().startswith(f'<div id="job-{job.pk}"')
    assert f'hx-get="{reverse("job-detail", args=[job.pk])}" hx-trigger="every 1s"' in fragment

    # No worker in this test: the job is still queued, and polling goes on.
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    url = reverse("job-detail", args=[job.pk])
    waiting = staff_client.get(url, headers={"HX-Request": "true"})
    assert waiting.status_code == 200
    assert "Waiting for a worker" in text_of(waiting)

    jobs.run_job(job.pk)
    done = staff_client.get(url, headers={"HX-Request": "true"})
    assert done.status_code == 286
    assert done["HX-Trigger"] == '{"job-done": {}}'
    assert "Done: 8 failed deliveries re-queued." in text_of(done)
    assert "hx-trigger" not in done.content.decode()
    assert not Delivery.objects.filter(destination=destination, status="failed").exists()
    # The full page works too (no JS): a plain 200 with the finished bar.
    page = staff_client.get(url)
    assert page.status_code == 200
    assert '<progress max="100" value="100"' in page.content.decode()


def test_retry_all_without_htmx_redirects_to_the_page_with_the_job(
    staff_client: Client, seeded: dict[str, Any]
) -> None:
    destination = seeded["destination"]
    response = staff_client.post(reverse("destination-retry-failed", args=[destination.pk]))
    job = Job.objects.get()
    page = reverse("destination-delivery", args=[destination.pk])
    assert response["Location"] == f"{page}?job={job.pk}"
    shown = staff_client.get(response["Location"])
    assert shown.context["job"] == job
    assert "Retrying 8 failed deliveries to Refiner." in text_of(shown)


# --- deliveries on the event page ----------------------------------------------------------


def test_event_page_lists_deliveries_attempts_and_why_not_routed(
    staff_client: Client, refiner_destination: Destination, post_ingest: IngestPost
) -> None:
    post_ingest("track", {"userId": "u-1", "event": "Signed Up", "messageId": "sent"})
    post_ingest(
        "track",
        {
            "userId": "u-1",
            "event": "Internal",
            "messageId": "held",
            "integrations": {"Refiner": False},
        },
    )
    sent = Event.objects.get(message_id="sent")
    delivery = Delivery.objects.get(event=sent)
    seed_attempt(delivery, 1, status=500, body='{"message": "Server Error"}')
    seed_attempt(delivery, 2, status=422, body='{"message": "The event field is required."}')
    Delivery.objects.filter(pk=delivery.pk).update(
        status="failed",
        attempts=2,
        reason="HTTP 422 from Refiner: The event field is required.",
        finished_at=timezone.now(),
    )

    response = staff_client.get(reverse("event-detail", args=[sent.pk]))
    [shown] = response.context["deliveries"]
    assert [a.number for a in shown.attempt_log.all()] == [1, 2]
    body = text_of(response)
    assert "HTTP 422 from Refiner: The event field is required." in body
    assert body.count('<span class="badge outcome-') == 2
    assert "<summary>Request and response</summary>" in body
    assert reverse("delivery-retry", args=[delivery.pk]) in body
    assert response.context["not_routed"] == []

    held = Event.objects.get(message_id="held")
    assert not Delivery.objects.filter(event=held).exists()
    held_page = staff_client.get(reverse("event-detail", args=[held.pk]))
    [reason] = held_page.context["not_routed"]
    assert reason.destination == refiner_destination
    assert reason.reason == 'integrations object has "Refiner": false'
    assert '<span class="reason">integrations object has "Refiner": false</span>' in text_of(
        held_page
    )
    assert "No deliveries for this event." in text_of(held_page)

    staff_client.post(
        reverse("delivery-retry", args=[delivery.pk]),
        {"next": reverse("event-detail", args=[sent.pk])},
    )
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING


def test_event_page_explains_a_destination_created_after_the_event(
    staff_client: Client, source: Source, fake_refiner: FakeRefiner, post_ingest: IngestPost
) -> None:
    post_ingest("identify", {"userId": "u-9", "messageId": "early"})
    destination_create(
        kind="refiner", name="Late", settings_values={}, secret_values={"api_key": "k"}
    )
    event = Event.objects.get(message_id="early")
    [reason] = staff_client.get(reverse("event-detail", args=[event.pk])).context["not_routed"]
    assert reason.reason == "created after this event was received"

"""Ingest's limits: body size, events per batch, nesting depth, NUL characters, and the
per-source rate limit."""

from __future__ import annotations

import multiprocessing

import pytest

from destinations.counters import add_to_counters
from destinations.ingest import ratelimit
from destinations.ingest.auth import SourceRef, forget_cached_sources
from destinations.ingest.ratelimit import check_rate_limit, forget_leases
from destinations.messages.errors import IngestError
from destinations.models import Event, IngestFailure, Source
from destinations.sources import source_create
from tests.helpers.ingest import IngestPost, start_of_a_fresh_second
from tests.helpers.refusals import assert_refused, item, nested_raw, track

pytestmark = pytest.mark.django_db


# --- limits ------------------------------------------------------------------------------------


def test_batch_body_over_500_kb(post_ingest: IngestPost, source: Source) -> None:
    big = "x" * 1024
    batch = [item("track", f"m{i}", properties={"blob": big}) for i in range(520)]
    response = post_ingest("batch", {"batch": batch})
    assert_refused(response, 413, "the limit is 500 KB")
    assert Event.objects.count() == 0


def test_batch_of_more_than_2500_events(post_ingest: IngestPost, source: Source) -> None:
    batch = [item("track", f"m{i}") for i in range(2501)]
    response = post_ingest("batch", {"batch": batch})
    assert_refused(response, 413, "batch has 2,501 events; the limit is 2,500")
    assert Event.objects.count() == 0
    assert IngestFailure.objects.get().endpoint == "batch"


def test_batch_of_exactly_2500_events_is_accepted(post_ingest: IngestPost) -> None:
    batch = [item("track", f"m{i}") for i in range(2500)]
    response = post_ingest("batch", {"batch": batch})
    assert response.status_code == 200, response.content
    assert Event.objects.count() == 2500


def test_json_nested_40_levels_inside_properties(post_ingest: IngestPost, source: Source) -> None:
    response = post_ingest("track", raw=nested_raw(40))
    assert_refused(response, 400, "JSON is nested more than 32 levels deep")
    assert Event.objects.count() == 0
    assert IngestFailure.objects.count() == 1


@pytest.mark.parametrize("levels", [5000, 50_000])
def test_json_nested_thousands_of_levels_is_a_clean_400(
    post_ingest: IngestPost, levels: int
) -> None:
    response = post_ingest("track", raw=nested_raw(levels))
    error = assert_refused(response, 400, "")
    assert "nested" in error or "depth" in error, error
    assert Event.objects.count() == 0


def test_json_nested_thousands_of_levels_gets_the_same_message_as_40(
    post_ingest: IngestPost,
) -> None:
    response = post_ingest("track", raw=nested_raw(5000))
    assert_refused(response, 400, "JSON is nested more than 32 levels deep")


def test_nul_character_is_refused_by_name_and_its_batch_neighbours_kept(
    post_ingest: IngestPost, source: Source
) -> None:
    bad = item("track", "nul-1", properties={"note": "a\x00b"})
    response = post_ingest("batch", {"batch": [item("track", "ok-0"), bad]})
    assert response.status_code == 200, response.content
    [failed] = response.json()["failed"]
    assert failed["index"] == 1
    assert "NUL character" in failed["reason"]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["ok-0"]


def test_escaped_backslash_before_u0000_is_ordinary_text(post_ingest: IngestPost) -> None:
    response = post_ingest("track", track(properties={"path": "C:\\u0000\\x"}))
    assert response.status_code == 200, response.content
    assert Event.objects.get().payload["properties"]["path"] == "C:\\u0000\\x"


def test_raw_nul_bytes_in_a_refused_body_are_recorded_readably(
    post_ingest: IngestPost, source: Source
) -> None:
    response = post_ingest("track", raw=b'{"userId": "u1", \x00\x00')
    assert_refused(response, 400, "Invalid JSON")
    assert "\ufffd" in IngestFailure.objects.get(source=source).excerpt


# --- rate limit --------------------------------------------------------------------------------


def test_rate_limit_per_source(post_ingest: IngestPost, source: Source) -> None:
    source.rate_limit_per_second = 3
    source.save()
    other = source_create(name="Backend")
    forget_cached_sources()

    start_of_a_fresh_second()
    statuses = [post_ingest("track", track(f"r{i}")).status_code for i in range(3)]
    limited = post_ingest("track", track("r3"))
    others = [post_ingest("track", track(f"o{i}"), write_key=other.write_key) for i in range(3)]

    assert statuses == [200, 200, 200]
    assert_refused(
        limited, 429, "Rate limit of 3 requests per second exceeded for source 'Web app'"
    )
    retry_after = limited["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    assert [r.status_code for r in others] == [200, 200, 200]
    assert set(Event.objects.filter(source=source).values_list("message_id", flat=True)) == {
        "r0",
        "r1",
        "r2",
    }
    assert Event.objects.filter(source=other).count() == 3
    assert IngestFailure.objects.count() == 0  # a 429 is not recorded as a refused message


def test_rate_limit_applies_to_a_write_key_in_the_body(
    post_ingest: IngestPost, source: Source
) -> None:
    source.rate_limit_per_second = 1
    source.save()
    forget_cached_sources()

    start_of_a_fresh_second()
    body = track("b0", writeKey=source.write_key)
    first = post_ingest("track", body, auth=False)
    second = post_ingest("track", {**body, "messageId": "b1"}, auth=False)

    assert first.status_code == 200, first.content
    assert_refused(second, 429, "Rate limit of 1 requests per second exceeded")
    assert list(Event.objects.values_list("message_id", flat=True)) == ["b0"]


def test_a_disabled_second_source_does_not_affect_the_first(
    post_ingest: IngestPost, source: Source
) -> None:
    other: Source = source_create(name="Old app")
    other.enabled = False
    other.save()
    forget_cached_sources()
    assert_refused(post_ingest("track", track(), write_key=other.write_key), 403, "'Old app'")
    assert post_ingest("track", track()).status_code == 200


def test_an_unknown_endpoint_is_a_plain_404_not_a_dashboard_page(post_ingest: IngestPost) -> None:
    response = post_ingest("trak", {"userId": "u1", "event": "E"})
    assert response.status_code == 404
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content == b"404 Not Found: no endpoint at /v1/trak\n"


def test_a_process_leases_part_of_the_limit_and_the_limit_still_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[dict[str, int]] = []

    def add(amounts: dict[str, int], ttl_seconds: int) -> dict[str, int]:
        asked.append(dict(amounts))
        return add_to_counters(amounts, ttl_seconds)

    monkeypatch.setattr(ratelimit, "add_to_counters", add)
    limited = SourceRef(id=424242, name="Leased", enabled=True, rate_limit_per_second=200)
    start_of_a_fresh_second()
    for _ in range(200):
        check_rate_limit(limited)
    with pytest.raises(IngestError) as refused:
        check_rate_limit(limited)
    assert refused.value.status == 429
    # A fiftieth of the limit at a time: 50 round trips to the shared counter, not 200.
    assert {amount for each in asked for amount in each.values()} == {4}
    assert len(asked) == 51  # the 51st found the second's budget spent


def test_another_process_sees_what_this_one_leased(monkeypatch: pytest.MonkeyPatch) -> None:
    # The control for the test above: the shared counter holds the leased requests, so a
    # process with no lease of its own gets only what is left.
    limited = SourceRef(id=434343, name="Shared", enabled=True, rate_limit_per_second=100)
    start_of_a_fresh_second()
    for _ in range(99):
        check_rate_limit(limited)  # 50 leases of 2; the last one has a request left over
    forget_leases()  # now another process, with no lease
    with pytest.raises(IngestError):
        check_rate_limit(limited)


def no_leases_held() -> None:
    assert ratelimit._leases.held == {}, ratelimit._leases.held


def test_a_forked_process_starts_without_the_parents_leases() -> None:
    limited = SourceRef(id=444444, name="Forked", enabled=True, rate_limit_per_second=200)
    start_of_a_fresh_second()
    check_rate_limit(limited)  # leases 4, spends 1
    assert ratelimit._leases.held[limited.id].left == 3
    child = multiprocessing.get_context("fork").Process(target=no_leases_held)
    child.start()
    child.join(30)
    assert child.exitcode == 0

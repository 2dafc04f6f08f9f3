"""Template helpers for delivery pages: JSON and HTTP samples, durations, the volume chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

from dashboard.charts import SERIES, BarChart, volume_chart
from dashboard.selectors.delivery_stats import VolumeBucket
from destinations.connectors.kana.connector import UNMAPPED
from destinations.delivery.services import retry_can_change
from destinations.models import DeliveryStatus
from destinations.web.display_json import parsed_or_none, pretty_json, readable

register = template.Library()


@register.filter(name="pretty_json")
def pretty_json_filter(value: Any) -> str:
    if value is None:
        return ""
    return pretty_json(value)


@register.filter
def can_retry(delivery: Any) -> bool:
    """Whether Retry is offered: only where sending again can change the outcome."""
    return retry_can_change(delivery.status, delivery.reason)


@register.filter
def unmapped(delivery: Any) -> bool:
    return delivery.status == DeliveryStatus.SKIPPED and delivery.reason == UNMAPPED


@register.filter
def http_response(sample: Any) -> str:
    """A recorded response as it would read on the wire: status, headers, then the body
    (re-indented when it is JSON, which destination APIs mostly answer)."""
    if not isinstance(sample, Mapping):
        return pretty_json_filter(sample)
    lines = [f"HTTP {sample.get('status', '?')}"]
    headers = sample.get("headers")
    if isinstance(headers, Mapping):
        lines.extend(f"{name}: {value}" for name, value in headers.items())
    body = sample.get("body") or ""
    parsed = parsed_or_none(body) if isinstance(body, str) else None
    if parsed is not None:
        body = pretty_json(parsed)
    return "\n".join(lines) + "\n\n" + readable(str(body))


@register.filter
def duration(seconds: float | timedelta | None) -> str:
    if seconds is None:
        return "—"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def ago(moment: datetime | None) -> str:
    """ "3 minutes ago", or "just now" where timesince would say "0 minutes"."""
    if moment is None:
        return ""
    if timezone.now() - moment < timedelta(minutes=1):
        return "just now"
    return f"{timesince(moment)} ago"


@register.inclusion_tag("includes/bar_chart.html")
def delivery_volume_chart(buckets: Sequence[VolumeBucket]) -> dict[str, Any]:
    chart: BarChart = volume_chart(buckets)
    return {"chart": chart, "legend": [(css, label) for _, css, label in SERIES]}

"""Stacked bar charts drawn as inline SVG on the server: no chart library, no script, nothing
for a Content-Security-Policy to allow. This module only does the geometry; the template
``includes/bar_chart.html`` draws it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dashboard.selectors.audiences import DaySize
from dashboard.selectors.delivery_stats import VolumeBucket

WIDTH = 960
HEIGHT = 200
PLOT_LEFT = 44  # room for the y-axis labels
PLOT_TOP = 8
PLOT_BOTTOM = 176  # x-axis labels go below
GAP = 0.2  # share of each slot left empty between bars

# Stacking order, bottom up: (attribute of VolumeBucket, CSS class, legend label).
SERIES = (
    ("delivered", "delivered", "Delivered"),
    ("not_delivered", "not-delivered", "Not delivered"),
    ("pending", "pending", "Pending"),
)


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css_class: str


@dataclass(frozen=True)
class Bar:
    rects: list[Rect]
    # The whole slot, invisible, so the tooltip works on short or empty bars too.
    hit: Rect
    title: str


@dataclass(frozen=True)
class Tick:
    position: float
    label: str
    anchor: str = "middle"  # SVG text-anchor: the last label ends at the edge, not past it


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    baseline: int
    bars: list[Bar]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    empty: bool

    @property
    def center_x(self) -> int:
        return (self.plot_left + self.plot_right) // 2

    @property
    def center_y(self) -> int:
        return (self.plot_top + self.baseline) // 2


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value``."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def time_label(moment: datetime, *, with_day: bool) -> str:
    return moment.strftime("%a %H:%M" if with_day else "%H:%M")


def value_ticks(top: int, plot_height: int) -> list[Tick]:
    return [
        Tick(PLOT_BOTTOM - fraction * plot_height, f"{round(top * fraction):,}")
        for fraction in (0, 0.5, 1)
        if top * fraction == int(top * fraction)
    ]


def volume_chart(buckets: Sequence[VolumeBucket]) -> BarChart:
    plot_width = WIDTH - PLOT_LEFT - 8
    plot_height = PLOT_BOTTOM - PLOT_TOP
    top = nice_ceiling(max((b.total for b in buckets), default=0))
    slot = plot_width / max(1, len(buckets))
    spans_days = bool(buckets) and (buckets[-1].end - buckets[0].start).days >= 1
    bars: list[Bar] = []
    for index, bucket in enumerate(buckets):
        x = PLOT_LEFT + index * slot
        bar_x, bar_width = x + slot * GAP / 2, slot * (1 - GAP)
        rects: list[Rect] = []
        y = float(PLOT_BOTTOM)
        for attribute, css_class, _ in SERIES:
            value = getattr(bucket, attribute)
            if not value:
                continue
            height = value / top * plot_height
            y -= height
            rects.append(Rect(bar_x, y, bar_width, height, css_class))
        counts = ", ".join(f"{getattr(bucket, a)} {label.lower()}" for a, _, label in SERIES)
        period = (
            f"{time_label(bucket.start, with_day=spans_days)} to "
            f"{time_label(bucket.end, with_day=False)} UTC"
        )
        bars.append(
            Bar(
                rects=rects,
                hit=Rect(x, PLOT_TOP, slot, plot_height, "hit"),
                title=f"{period}: {counts}",
            )
        )
    labels = [time_label(b.start, with_day=spans_days) for b in buckets]
    return chart(bars, top, labels, empty=not any(b.total for b in buckets))


def size_chart(days: Sequence[DaySize]) -> BarChart:
    """An audience's size at the end of each day, a bar a day (the last one: now)."""
    plot_width = WIDTH - PLOT_LEFT - 8
    plot_height = PLOT_BOTTOM - PLOT_TOP
    top = nice_ceiling(max((d.size or 0 for d in days), default=0))
    slot = plot_width / max(1, len(days))
    bars: list[Bar] = []
    for index, day in enumerate(days):
        x = PLOT_LEFT + index * slot
        rects: list[Rect] = []
        if day.size:
            height = day.size / top * plot_height
            rects.append(
                Rect(x + slot * GAP / 2, PLOT_BOTTOM - height, slot * (1 - GAP), height, "size")
            )
        when = "now" if index == len(days) - 1 else f"end of {day_label(day.day)}"
        size = "not computed yet" if day.size is None else f"{day.size:,} members"
        bars.append(Bar(rects, Rect(x, PLOT_TOP, slot, plot_height, "hit"), f"{when}: {size}"))
    labels = [day_label(d.day) for d in days]
    return chart(bars, top, labels, empty=not any(d.size for d in days))


def chart(bars: list[Bar], top: int, labels: Sequence[str], *, empty: bool) -> BarChart:
    """The chart around ``bars`` (one slot each, labelled ``labels``): value ticks up to
    ``top``, and the first, middle and last slots' labels on the x axis."""
    plot_width = WIDTH - PLOT_LEFT - 8
    slot = plot_width / max(1, len(labels))
    x_ticks: list[Tick] = []
    if labels:
        last = len(labels) - 1
        for index in sorted({0, len(labels) // 2, last}):
            if index == last and last:
                x_ticks.append(Tick(PLOT_LEFT + plot_width, labels[index], "end"))
            elif index == 0:
                x_ticks.append(Tick(PLOT_LEFT + slot * GAP / 2, labels[index], "start"))
            else:
                x_ticks.append(Tick(PLOT_LEFT + index * slot + slot / 2, labels[index]))
    return BarChart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=PLOT_LEFT,
        plot_right=PLOT_LEFT + plot_width,
        plot_top=PLOT_TOP,
        baseline=PLOT_BOTTOM,
        bars=bars,
        y_ticks=value_ticks(top, PLOT_BOTTOM - PLOT_TOP),
        x_ticks=x_ticks,
        empty=empty,
    )


def day_label(moment: datetime) -> str:
    return moment.strftime("%b %d")

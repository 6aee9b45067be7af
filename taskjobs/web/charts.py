"""The dashboard's chart, drawn by the server: the geometry of an SVG bar chart of what ended
per stretch of the window. The template draws the shapes (and escapes their labels)."""

from __future__ import annotations

import dataclasses

from taskjobs.report import Bucket

# The drawing's size in SVG units; the page scales it to its width.
WIDTH = 960
HEIGHT = 180
# Room for the axis labels.
LEFT = 44
BOTTOM = 22
TOP = 8


@dataclasses.dataclass(frozen=True)
class Bar:
    """One bucket's stacked bar: finished below, failed above."""

    x: float
    width: float
    finished_y: float
    finished_height: float
    failed_y: float
    failed_height: float
    label: str


@dataclasses.dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: float
    peak: int
    bars: tuple[Bar, ...]
    # (x, text) of the time labels under the axis.
    ticks: tuple[tuple[float, str], ...]


def timeline(buckets: list[Bucket]) -> Chart:
    """The chart of ``buckets``: bars scaled to the busiest one, six time labels."""
    peak = max((b.finished + b.failed for b in buckets), default=0)
    scale = (HEIGHT - TOP - BOTTOM) / peak if peak else 0.0
    baseline = HEIGHT - BOTTOM
    step = (WIDTH - LEFT) / max(len(buckets), 1)
    bars = []
    for index, bucket in enumerate(buckets):
        finished_height = bucket.finished * scale
        failed_height = bucket.failed * scale
        bars.append(
            Bar(
                x=LEFT + index * step + step * 0.1,
                width=step * 0.8,
                finished_y=baseline - finished_height,
                finished_height=finished_height,
                failed_y=baseline - finished_height - failed_height,
                failed_height=failed_height,
                label=f"{bucket.start:%Y-%m-%d %H:%M}: {bucket.finished} finished, "
                f"{bucket.failed} failed",
            )
        )
    every = max(len(buckets) // 6, 1)
    span_days = (buckets[-1].start - buckets[0].start).days if buckets else 0
    shape = "%m-%d %H:%M" if span_days >= 1 else "%H:%M"
    ticks = tuple(
        (LEFT + index * step, f"{bucket.start:{shape}}")
        for index, bucket in enumerate(buckets)
        if index % every == 0
    )
    return Chart(WIDTH, HEIGHT, LEFT, baseline, peak, tuple(bars), ticks)

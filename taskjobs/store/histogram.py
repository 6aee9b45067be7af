"""The histogram bins durations are counted in by the running aggregates (``stats``), and the
percentiles read back from them.

Each value counts in the bin of the smallest bound of ``EDGES`` at or above it (0.1234 s counts
as 0.1264 s), bounds at most 9.1% apart. A percentile read from them is the nearest-rank value
rounded up so: never below the exact one, and less than 10% above it; exact for round values
(0.25 s, 2 s, 5 min), which are bounds. Every bound of the metrics' buckets is one, so their
counts are exact.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

# Each bin's bound is at most this much above the one before it.
GROWTH = 1.09


def _edges() -> tuple[float, ...]:
    """The upper bounds of the duration bins, in seconds, from 0.1 ms to 115 days: a geometric
    series ``GROWTH`` apart (each rounded to four digits), with the round values between them
    (1, 2, 2.5, 3 and 5 times each power of ten; minutes and hours up to a day)."""
    edges = {float(f"{GROWTH**k:.4g}") for k in range(-107, 188)}  # 1.09**-107 is 10**-4
    # Written out, so that 0.3 is 0.3 and not 3 * 0.1 (0.30000000000000004), which a bucket
    # bound of 0.3 would not equal.
    edges |= {float(f"{m}e{e}") for e in range(-4, 8) for m in (1, 2, 2.5, 3, 5)}
    edges |= {60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0, 10800.0,
              21600.0, 43200.0, 86400.0}  # fmt: skip
    return tuple(sorted(edge for edge in edges if 1e-4 <= edge <= 1e7))


EDGES = _edges()


# Each edge as its bin's label, formatted once.
_LABELS = tuple(format(edge, "g") for edge in EDGES)


def bin_label(seconds: float) -> str:
    """The histogram bin of a duration: the smallest of ``EDGES`` at or above it, as text
    ("0.1", "0.1264"), so less than 10% above it; "0" for zero or less (a clock that went
    backwards); past the last edge (115 days), the whole seconds rounded up."""
    if not seconds > 0:
        return "0"
    index = bisect.bisect_left(EDGES, seconds)
    if index == len(EDGES):
        return str(math.ceil(seconds))
    return _LABELS[index]


def bin_bound(label: str) -> float:
    """The upper bound a bin label stands for."""
    return float(label)


def percentiles(bins: Mapping[str, int], points: Iterable[int]) -> dict[str, float]:
    """Nearest-rank percentiles (``p<n>`` for each of ``points``) and ``max`` of the values
    counted in ``bins`` (label: count); each the upper bound of its bin."""
    ordered = sorted(((bin_bound(label), count) for label, count in bins.items() if count > 0))
    total = sum(count for _, count in ordered)
    if not total:
        return {}
    found: dict[str, float] = {"max": ordered[-1][0]}
    for point in points:
        rank = (total * point + 99) // 100
        seen = 0
        for bound, count in ordered:
            seen += count
            if seen >= rank:
                found[f"p{point}"] = bound
                break
    return found

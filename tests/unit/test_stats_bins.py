"""The duration bins of the running aggregates, built as ``taskjobs.store.stats`` documents them:
the bounds every percentile of the report and every bucket count of the metrics is read at."""

from __future__ import annotations

import itertools

from taskjobs.store import stats

ROUND = {float(f"{m}e{e}") for e in range(-4, 8) for m in (1, 2, 2.5, 3, 5) if m * 10**e <= 1e7}
MINUTES_AND_HOURS = {60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0, 10800.0,
                     21600.0, 43200.0, 86400.0}  # fmt: skip


def test_the_bounds_run_from_a_tenth_of_a_millisecond_to_115_days_at_most_9_1_percent_apart() -> (
    None
):
    # Built afresh: ``EDGES`` is computed once, when the module is imported.
    edges = stats._edges()
    assert edges[0] == 1e-4 and edges[-1] == 1e7
    assert list(edges) == sorted(set(edges))
    assert max(upper / lower for lower, upper in itertools.pairwise(edges)) < 1.091
    # Each bound is written with at most four digits, as its label shows it.
    assert all(float(f"{edge:.4g}") == edge for edge in edges)
    assert len(edges) == 361


def test_round_values_are_bounds_so_their_percentiles_and_counts_are_exact() -> None:
    edges = set(stats._edges())
    assert edges >= ROUND
    assert edges >= MINUTES_AND_HOURS
    assert all(stats.bin_label(value) == format(value, "g") for value in ROUND | MINUTES_AND_HOURS)
    # A bucket of 0.3 s is 0.3 s, not 3 * 0.1 (0.30000000000000004) that no user would write.
    assert 0.3 in edges and stats.bin_bound(stats.bin_label(0.3)) == 0.3


def test_percentiles_are_nearest_rank_bin_bounds_of_the_bins_that_count_jobs() -> None:
    # An emptied bin (its jobs purged) counts for nothing, not even the maximum.
    assert stats.percentiles({"0.5": 3, "2": 1, "100": 0}, (50, 95)) == {
        "max": 2.0, "p50": 0.5, "p95": 2.0
    }  # fmt: skip
    assert stats.percentiles({"0.5": 19, "2": 1}, (95,)) == {"max": 2.0, "p95": 0.5}
    assert stats.percentiles({}, (50,)) == {}

"""The duration bins of the running aggregates, built as ``taskjobs.store.stats`` documents them:
the bounds every percentile of the report and every bucket count of the metrics is read at."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskjobs.model import CELERY_LOST, ERROR, FINISHED, PENDING, RUNNING
from taskjobs.store import histogram, stats
from taskjobs.store.tables import STAT_FIGURES

ROUND = {float(f"{m}e{e}") for e in range(-4, 8) for m in (1, 2, 2.5, 3, 5) if m * 10**e <= 1e7}
MINUTES_AND_HOURS = {60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0, 10800.0,
                     21600.0, 43200.0, 86400.0}  # fmt: skip


def test_the_bounds_run_from_a_tenth_of_a_millisecond_to_115_days_at_most_9_1_percent_apart() -> (
    None
):
    # Built afresh: ``EDGES`` is computed once, when the module is imported.
    edges = histogram._edges()
    assert edges[0] == 1e-4 and edges[-1] == 1e7
    assert list(edges) == sorted(set(edges))
    assert max(upper / lower for lower, upper in itertools.pairwise(edges)) < 1.091
    # Each bound is written with at most four digits, as its label shows it.
    assert all(float(f"{edge:.4g}") == edge for edge in edges)
    assert len(edges) == 361


def test_round_values_are_bounds_so_their_percentiles_and_counts_are_exact() -> None:
    edges = set(histogram._edges())
    assert edges >= ROUND
    assert edges >= MINUTES_AND_HOURS
    round_values = ROUND | MINUTES_AND_HOURS
    assert all(histogram.bin_label(value) == format(value, "g") for value in round_values)
    # A bucket of 0.3 s is 0.3 s, not 3 * 0.1 (0.30000000000000004) that no user would write.
    assert 0.3 in edges and histogram.bin_bound(histogram.bin_label(0.3)) == 0.3


def test_percentiles_are_nearest_rank_bin_bounds_of_the_bins_that_count_jobs() -> None:
    # An emptied bin (its jobs purged) counts for nothing, not even the maximum.
    assert histogram.percentiles({"0.5": 3, "2": 1, "100": 0}, (50, 95)) == {
        "max": 2.0, "p50": 0.5, "p95": 2.0
    }  # fmt: skip
    assert histogram.percentiles({"0.5": 19, "2": 1}, (95,)) == {"max": 2.0, "p95": 0.5}
    assert histogram.percentiles({}, (50,)) == {}


def test_a_job_counts_in_the_aggregates_of_its_minute_ten_minutes_hour_four_hours_and_end() -> None:
    created = datetime(2026, 3, 1, 14, 34, 56, tzinfo=timezone.utc)
    eta = created + timedelta(seconds=30)  # it waits from its ETA, later than its publish
    change = {
        "sign": 1,
        "name": "tasks.a",
        "status": ERROR,
        "worker": "celery@w1",
        "exc_type": "ValueError",
        "celery_state": None,
        "retries": 2,
        "created_at": created,
        "eta": eta,
        "started_at": eta + timedelta(seconds=2.5),
        "finished_at": datetime(2026, 3, 1, 15, 0, 10, tzinfo=timezone.utc),
        "runtime": 2.0,
    }
    buckets = [(14400, created.replace(hour=12, minute=0, second=0)),
               (3600, created.replace(minute=0, second=0)),
               (600, created.replace(minute=30, second=0)),
               (60, created.replace(second=0))]  # fmt: skip
    every_time = (stats.ALL_TIME, stats.EPOCH)
    wanted = {
        **{(w, b, stats.STATE, "tasks.a", ERROR): (1, 2.0) for w, b in [*buckets, every_time]},
        **{(w, b, stats.WORKER, "celery@w1", ERROR): (1, 0.0) for w, b in buckets},
        **{(w, b, stats.EXCEPTION, "tasks.a", "ValueError"): (1, 0.0) for w, b in buckets},
        (*every_time, stats.FAILURE, "tasks.a", "ValueError"): (1, 0.0),
        **{(w, b, stats.RUNTIME, "tasks.a", "2"): (1, 2.0) for w, b in buckets},
        **{(w, b, stats.WAIT, "tasks.a", "2.5"): (1, 2.5) for w, b in buckets},
        (60, datetime(2026, 3, 1, 15, 0, tzinfo=timezone.utc), stats.ENDED, "", ERROR): (1, 0.0),
    }
    assert {key: (jobs, total) for key, jobs, total in stats.expand(change)} == wanted
    # Its removal (sign -1) takes exactly as much away.
    removed = {key: (jobs, total) for key, jobs, total in stats.expand({**change, "sign": -1})}
    assert removed == {key: (-jobs, -total) for key, (jobs, total) in wanted.items()}


def test_a_lost_job_fails_by_its_celery_state_and_a_clock_gone_back_waits_zero() -> None:
    created = datetime(2026, 3, 1, 12, 34, 56, tzinfo=timezone.utc)
    change = {
        "sign": 1,
        "name": None,
        "status": ERROR,
        "worker": None,
        "exc_type": None,
        "celery_state": CELERY_LOST,
        "retries": 0,
        "created_at": created,
        "eta": None,
        "started_at": created - timedelta(seconds=3),
        "finished_at": None,
        "runtime": None,
    }
    found = {key[2:]: (jobs, total) for key, jobs, total in stats.expand(change)}
    assert found[(stats.FAILURE, "", CELERY_LOST)] == (1, 1.0)  # a lost job, counted as lost
    assert found[(stats.WAIT, "", "0")] == (1, 0.0)
    assert {kind for kind, _, _ in found} == {stats.STATE, stats.FAILURE, stats.WAIT}


def test_a_logged_change_takes_away_the_figures_before_it_and_adds_those_after_it() -> None:
    created = datetime(2026, 3, 1, 14, 34, 56, tzinfo=timezone.utc)
    before = {figure: None for figure in STAT_FIGURES}
    before.update(name="tasks.a", status=RUNNING, retries=0, created_at=created)
    after = {**before, "status": ERROR, "celery_state": CELERY_LOST}
    update = {"id": 7, **{f"old_{k}": v for k, v in before.items()},
              **{f"new_{k}": v for k, v in after.items()}}  # fmt: skip
    assert list(stats.sides(update)) == [{"sign": -1, **before}, {"sign": 1, **after}]
    nothing = {figure: None for figure in STAT_FIGURES}
    insert = {**update, **{f"old_{k}": v for k, v in nothing.items()}}
    delete = {**update, **{f"new_{k}": v for k, v in nothing.items()}}
    assert list(stats.sides(insert)) == [{"sign": 1, **after}]
    assert list(stats.sides(delete)) == [{"sign": -1, **before}]
    # The running job leaves its state's buckets, the lost one enters its own.
    sums = stats.add_up([update])
    hour = (3600, created.replace(minute=0, second=0))
    assert sums[(*hour, stats.STATE, "tasks.a", RUNNING)] == [-1, 0.0]
    assert sums[(*hour, stats.STATE, "tasks.a", ERROR)] == [1, 0.0]
    assert sums[(stats.ALL_TIME, stats.EPOCH, stats.FAILURE, "tasks.a", CELERY_LOST)] == [1, 1.0]


FIGURES = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["tasks.a", "tasks.b", None]),
        "status": st.sampled_from([PENDING, RUNNING, FINISHED, ERROR]),
        "worker": st.sampled_from(["celery@w1", None]),
        "exc_type": st.sampled_from(["ValueError", None]),
        "celery_state": st.sampled_from([CELERY_LOST, "FAILURE", None]),
        "retries": st.integers(0, 3),
        # A few hours around the epoch's 4-hour bucket edges, to the microsecond.
        "created_at": st.datetimes(
            min_value=datetime(2026, 3, 1, 11), max_value=datetime(2026, 3, 1, 17),
            timezones=st.just(timezone.utc),
        ),
        "eta": st.one_of(st.none(), st.floats(-5, 90)),
        "started_at": st.one_of(st.none(), st.floats(-5, 90)),
        "finished_at": st.one_of(st.none(), st.floats(0, 200)),
        "runtime": st.one_of(st.none(), st.floats(0, 120)),
    }
)  # fmt: skip


def _times(figures: dict[str, Any]) -> dict[str, Any]:
    """Figures whose later times are drawn as seconds after the creation."""
    created = figures["created_at"]
    for column in ("eta", "started_at", "finished_at"):
        if figures[column] is not None:
            figures[column] = created + timedelta(seconds=figures[column])
    return figures


@given(st.lists(st.tuples(st.one_of(st.none(), FIGURES), st.one_of(st.none(), FIGURES)),
                max_size=40))  # fmt: skip
def test_a_batch_adds_up_to_the_sum_of_what_each_of_its_changes_adds(
    drawn: list[tuple[dict[str, Any] | None, dict[str, Any] | None]],
) -> None:
    """A fold adds many sides up per part before it spreads them over buckets: that must come
    to what each side adds on its own, in the buckets ``bucket_start`` puts it in."""
    nothing = {figure: None for figure in STAT_FIGURES}
    changes = [
        {**{f"old_{k}": v for k, v in _times(old or dict(nothing)).items()},
         **{f"new_{k}": v for k, v in _times(new or dict(nothing)).items()}}
        for old, new in drawn
    ]  # fmt: skip
    wanted: dict[stats.Key, list[Any]] = {}
    for change in changes:
        for side in stats.sides(change):
            keys = list(stats.expand(side))
            created = side["created_at"]
            in_state = {key[:2] for key, _, _ in keys if key[2] == stats.STATE}
            assert in_state == {(width, stats.bucket_start(created, width))
                                for width in (*stats.WIDTHS, stats.ALL_TIME)}  # fmt: skip
            for key, jobs, total in keys:
                entry = wanted.setdefault(key, [0, 0.0])
                entry[0] += jobs
                entry[1] += total
    found = stats.add_up(changes)
    assert {key: jobs for key, (jobs, _) in found.items() if jobs} == {
        key: jobs for key, (jobs, _) in wanted.items() if jobs
    }
    for key, (_, total) in wanted.items():
        assert found.get(key, [0, 0.0])[1] == pytest.approx(total, abs=1e-6)

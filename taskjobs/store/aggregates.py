"""The figures of the status report and of the Prometheus metrics: the window's from the
running aggregates (``stats``), what the store holds now (pending, running, slow jobs, the
workers' heartbeats) from the jobs' own indexes."""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from taskjobs.model import PENDING, bucket_seconds
from taskjobs.store import histogram, reads, stats
from taskjobs.store.reads import job_from_row
from taskjobs.store.tables import IS_PENDING, IS_RUNNING, jobs, workers

# Percentiles the report shows, in per cent.
PERCENTILES = (50, 95)
# The kinds of running aggregate the report reads over its window.
REPORT_KINDS = (stats.STATE, stats.WORKER, stats.EXCEPTION, stats.RUNTIME, stats.WAIT)


def report_rows(
    connection: sa.Connection,
    *,
    since: datetime,
    until: datetime,
    slow_before: datetime,
    slow_limit: int,
) -> dict[str, Any]:
    """The raw figures of the status report (see ``taskjobs.report``), read in ``connection``'s
    one transaction, which must be a snapshot (the aggregates and the changes not yet folded
    into them are read in two statements).

    Window figures cover jobs created in [since, until), both taken to the minute by the
    caller (see ``stats.cover``); ``running``, ``oldest_pending``, ``slow`` (running since
    before ``slow_before``) and the workers' last heartbeats describe the store as it is now.
    ``unfolded`` is how many logged changes were read that no fold had moved yet.
    """
    c = jobs.c
    unfolded = stats.backlog(connection)
    window = stats.Figures(connection, REPORT_KINDS, stats.cover(since, until), unfolded)
    slow = (
        sa.select(jobs)
        .where(IS_RUNNING, c.started_at < slow_before)
        .order_by(c.started_at)
        .limit(slow_limit)
    )
    by_worker = [(worker, status, n) for worker, status, n, _ in window.of(stats.WORKER)]
    running = list(reads.running_by_worker(connection).items())
    exceptions: dict[str, int] = defaultdict(int)
    for _, exception, count, _ in window.of(stats.EXCEPTION):
        exceptions[exception] += count
    return {
        "by_name_and_status": [row[:3] for row in window.of(stats.STATE)],
        "by_worker_and_status": by_worker,
        "running_by_worker": running,
        "worker_last_seen": last_heartbeats(
            connection, {row[0] for row in (*by_worker, *running) if row[0]}
        ),
        "exceptions": sorted(exceptions.items()),
        "runtime": _percentiles(window, stats.RUNTIME),
        "queue_wait": _percentiles(window, stats.WAIT),
        "oldest_pending": oldest(connection, c.created_at, c.status == PENDING),
        "slow": [job_from_row(row) for row in connection.execute(slow).mappings()],
        "timeline": timeline(connection, since, until, unfolded),
        "unfolded": unfolded.count,
    }


def timeline(
    connection: sa.Connection,
    since: datetime,
    until: datetime,
    unfolded: stats.Backlog,
) -> list[tuple[int, str, int]]:
    """(bucket, status, count) of the jobs that ended (finished or error) in [since, until),
    both on a minute, bucket ``n`` covering the ``n``-th ``bucket_seconds`` from ``since``."""
    counts = stats.ended(connection, since, until, bucket_seconds(since, until), unfolded)
    return [(bucket, status, count) for (bucket, status), count in sorted(counts.items()) if count]


def _percentiles(window: stats.Figures, kind: str) -> dict[str, dict[str, float]]:
    """Per task name: the percentiles (``p50``, ``p95``) and ``max`` of one histogram kind."""
    bins: dict[str, dict[str, int]] = defaultdict(dict)
    for name, label, count, _ in window.of(kind):
        bins[name][label] = count
    return {name: histogram.percentiles(found, PERCENTILES) for name, found in bins.items()}


def oldest(connection: sa.Connection, column: Any, where: Any) -> datetime | None:
    """The earliest value of ``column`` among rows matching ``where``."""
    value: datetime | None = connection.scalar(sa.select(sa.func.min(column)).where(where))
    return value


def last_heartbeats(
    connection: sa.Connection, names: Collection[str]
) -> list[tuple[str, datetime]]:
    """(worker, when it last sent a heartbeat) for those of ``names`` that ever sent one."""
    if not names:
        return []
    query = sa.select(workers.c.name, workers.c.last_seen).where(workers.c.name.in_(sorted(names)))
    return [(name, last_seen) for name, last_seen in connection.execute(query)]


def metrics_rows(
    connection: sa.Connection, *, now: datetime, since: datetime, buckets: Sequence[float]
) -> dict[str, Any]:
    """The raw figures of the Prometheus metrics, read in ``connection``'s one transaction (a
    snapshot, as for ``report_rows``).

    ``totals``: (name, status, jobs, retries recorded) over every job. ``errors``: (name,
    exception, jobs, lost) over the jobs in error, ``exception`` being the exception class (the
    Celery state when there is none), ``lost`` those whose worker was lost. ``oldest_pending``:
    (name, since when its longest-waiting pending job waits), from the job's ETA when it has
    one, jobs whose ETA is still ahead left out. ``histograms``: (name, then for the runtime and
    then the queue wait: the count at most each of ``buckets``, the count and the sum) over the
    jobs created since ``since`` (to the minute) that started. Each of ``buckets`` must be a
    bound of the histograms' bins (``histogram.EDGES``), so that its count is exact.
    """
    uneven = sorted(set(buckets) - set(histogram.EDGES))
    if uneven:
        raise ValueError(
            f"histogram bucket bounds {uneven} are not bounds of taskjobs' duration bins: "
            "pick round values (1, 2, 2.5, 3 or 5 times a power of ten, minutes, hours) or "
            "others from taskjobs.store.histogram.EDGES"
        )
    c = jobs.c
    unfolded = stats.backlog(connection)
    every_job = stats.Figures(connection, [stats.STATE, stats.FAILURE],
                              [(stats.ALL_TIME, stats.EPOCH, now)], unfolded)  # fmt: skip
    recent = stats.Figures(connection, [stats.RUNTIME, stats.WAIT], stats.cover(since, now),
                           unfolded)  # fmt: skip
    waiting_since = sa.case((c.eta > c.created_at, c.eta), else_=c.created_at)
    oldest_pending = (
        sa.select(c.name, sa.func.min(waiting_since))
        .where(IS_PENDING, sa.or_(c.eta.is_(None), c.eta <= now))
        .group_by(_grouping(c.name, connection.dialect.name))
    )
    # Each bin is counted in the smallest limit at or above its bound, then the counts are
    # summed up the limits: a histogram's cumulative counts, in one pass over its bins.
    limits = sorted(set(buckets))
    width = len(limits) + 2  # a count per limit, then the count of all and the sum
    counted: dict[str, list[Any]] = {}
    for offset, kind in enumerate((stats.RUNTIME, stats.WAIT)):
        for name, label, count, total in recent.of(kind):
            figures = counted.setdefault(name, [0] * (2 * width))
            bound = histogram.bin_bound(label)
            figures[offset * width + bisect.bisect_left(limits, bound)] += count
            figures[offset * width + width - 1] += total
    order = [limits.index(limit) for limit in buckets]
    histograms: dict[str, list[Any]] = {}
    for name, figures in counted.items():
        histograms[name] = []
        for start in (0, width):
            cumulative = list(itertools.accumulate(figures[start : start + width - 1]))
            histograms[name] += [*(cumulative[i] for i in order), cumulative[-1],
                                 figures[start + width - 1]]  # fmt: skip
    return {
        "totals": [(name, status, jobs, retries)
                   for name, status, jobs, retries in every_job.of(stats.STATE)],
        "errors": [(name, exception, jobs, lost)
                   for name, exception, jobs, lost in every_job.of(stats.FAILURE)],
        "oldest_pending": [tuple(row) for row in connection.execute(oldest_pending)],
        "histograms": [(name, *figures) for name, figures in sorted(histograms.items())],
        "unfolded": unfolded.count,
    }  # fmt: skip


def _grouping(column: Any, dialect: str) -> Any:
    """``column`` to group by. SQLite would read the whole table through the index on that
    column to save a sort (2.6 s instead of 0.75 s for 1,000,000 jobs, and a full read where
    the status index finds the few pending ones); a unary ``+`` makes it unindexable there."""
    if dialect != "sqlite":
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"))

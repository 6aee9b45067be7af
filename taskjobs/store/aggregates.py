"""The SQL behind the status report: counts, nearest-rank percentiles, ages. Portable SQL only
(window functions, no percentile_cont), so SQLite, PostgreSQL and MySQL give the same figures."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from taskjobs.model import CELERY_LOST, ERROR, FINISHED, PENDING, RUNNING, bucket_seconds
from taskjobs.store import dialects
from taskjobs.store.reads import job_from_row
from taskjobs.store.tables import jobs, workers

# Percentiles the report shows, in per cent.
PERCENTILES = (50, 95)


def report_rows(
    connection: sa.Connection,
    *,
    since: datetime,
    until: datetime,
    slow_before: datetime,
    slow_limit: int,
) -> dict[str, Any]:
    """The raw figures of the status report (see ``taskjobs.report``), read in ``connection``'s
    one transaction.

    Window figures cover jobs created in [since, until); ``running``, ``oldest_pending``,
    ``slow`` (running since before ``slow_before``) and the workers' last heartbeats describe
    the store as it is now.
    """
    c = jobs.c
    window = in_window(since, until)
    wait = dialects.seconds_between(connection.dialect.name, c.created_at, c.started_at)
    slow = (
        sa.select(jobs)
        .where(c.status == RUNNING, c.started_at < slow_before)
        .order_by(c.started_at)
        .limit(slow_limit)
    )
    by_worker = counts(connection, [c.worker, c.status], sa.and_(window, c.worker.is_not(None)))
    running = counts(connection, [c.worker], c.status == RUNNING)
    return {
        "by_name_and_status": counts(connection, [c.name, c.status], window),
        "by_worker_and_status": by_worker,
        "running_by_worker": running,
        "worker_last_seen": last_heartbeats(
            connection, {row[0] for row in (*by_worker, *running) if row[0]}
        ),
        "exceptions": counts(connection, [c.exc_type], sa.and_(window, c.exc_type.is_not(None))),
        "runtime": percentiles(connection, c.runtime, window),
        "queue_wait": percentiles(connection, wait, sa.and_(window, c.started_at.is_not(None))),
        "oldest_pending": oldest(connection, c.created_at, c.status == PENDING),
        "slow": [job_from_row(row) for row in connection.execute(slow).mappings()],
        "timeline": timeline(connection, since, until),
    }


def timeline(
    connection: sa.Connection, since: datetime, until: datetime
) -> list[tuple[int, str, int]]:
    """(bucket, status, count) of the jobs created in [since, until) that ended (finished or
    error) in it, bucket ``n`` covering the ``n``-th ``bucket_seconds`` from ``since``."""
    c = jobs.c
    width = bucket_seconds(since, until)
    start = sa.literal(since, type_=c.finished_at.type)
    offset = dialects.seconds_between(connection.dialect.name, start, c.finished_at)
    bucket = sa.cast(sa.func.floor(offset / width), sa.Integer).label("bucket")
    ended = sa.and_(
        in_window(since, until),
        c.status.in_((FINISHED, ERROR)),
        c.finished_at >= since,
        c.finished_at < until,
    )
    query = sa.select(bucket, c.status, sa.func.count()).where(ended).group_by(bucket, c.status)
    return [(int(b), status, count) for b, status, count in connection.execute(query)]


def in_window(since: datetime, until: datetime) -> Any:
    """Jobs created in [since, until)."""
    return sa.and_(jobs.c.created_at >= since, jobs.c.created_at < until)


def counts(connection: sa.Connection, group_by: Iterable[Any], where: Any) -> list[tuple[Any, ...]]:
    """Row counts per group: tuples of the group values followed by the count."""
    columns = list(group_by)
    query = sa.select(*columns, sa.func.count()).where(where).group_by(*columns)
    return [tuple(row) for row in connection.execute(query)]


def percentiles(
    connection: sa.Connection, value: Any, where: Any
) -> dict[str, dict[str, float | None]]:
    """Per task name: nearest-rank percentiles (``p50``, ``p95``) and ``max`` of ``value``."""
    if dialects.ordered_set_aggregates(connection.dialect.name):
        return _ordered_set_percentiles(connection, value, where)
    ranked = (
        sa.select(
            jobs.c.name.label("name"),
            value.label("value"),
            sa.func.row_number().over(partition_by=jobs.c.name, order_by=value).label("rank"),
            sa.func.count().over(partition_by=jobs.c.name).label("total"),
        )
        .where(where, value.is_not(None))
        .subquery()
    )
    # The nearest rank of percentile p among n values is ceil(p * n / 100).
    ranks = {f"p{p}": (ranked.c.total * p + 99) // 100 for p in PERCENTILES}
    query = sa.select(ranked.c.name, ranked.c.value, ranked.c.rank, ranked.c.total).where(
        sa.or_(ranked.c.rank == ranked.c.total, *(ranked.c.rank == rank for rank in ranks.values()))
    )
    found: dict[str, dict[str, float | None]] = {}
    for name, number, rank, total in connection.execute(query):
        entry = found.setdefault(name, {})
        for p in PERCENTILES:
            if rank == (total * p + 99) // 100:
                entry[f"p{p}"] = float(number)
        if rank == total:
            entry["max"] = float(number)
    return found


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


def _ordered_set_percentiles(
    connection: sa.Connection, value: Any, where: Any
) -> dict[str, dict[str, float | None]]:
    """The same figures with PostgreSQL's ``percentile_disc``, which is the nearest rank, in one
    pass per name instead of numbering every row."""
    figures = [
        sa.func.percentile_disc(p / 100).within_group(value).label(f"p{p}") for p in PERCENTILES
    ]
    query = (
        sa.select(jobs.c.name, *figures, sa.func.max(value).label("max"))
        .where(where, value.is_not(None))
        .group_by(jobs.c.name)
    )
    return {
        row.name: {
            key: float(row._mapping[key]) for key in (*(f"p{p}" for p in PERCENTILES), "max")
        }
        for row in connection.execute(query)
    }


def metrics_rows(
    connection: sa.Connection, *, now: datetime, since: datetime, buckets: Sequence[float]
) -> dict[str, Any]:
    """The raw figures of the Prometheus metrics, read in ``connection``'s one transaction.

    ``totals``: (name, status, jobs, retries recorded) over every job. ``errors``: (name,
    exception, jobs, lost) over the jobs in error, ``exception`` being the exception class (the
    Celery state when there is none), ``lost`` those whose worker was lost. ``oldest_pending``:
    (name, since when its longest-waiting pending job waits), from the job's ETA when it has
    one, jobs whose ETA is still ahead left out. ``histograms``: (name, then for the runtime and
    then the queue wait: the count at most each of ``buckets``, the count and the sum) over the
    jobs created since ``since`` that started.
    """
    c = jobs.c
    dialect = connection.dialect.name
    name = _grouping(c.name, dialect)
    totals = sa.select(
        c.name, c.status, sa.func.count(), sa.func.sum(sa.func.coalesce(c.retries, 0))
    ).group_by(name, c.status)
    exception = sa.func.coalesce(c.exc_type, c.celery_state, "")
    errors = (
        sa.select(
            c.name,
            exception,
            sa.func.count(),
            sa.func.sum(sa.case((c.celery_state == CELERY_LOST, 1), else_=0)),
        )
        .where(c.status == ERROR)
        .group_by(name, exception)
    )
    waiting_since = sa.case((c.eta > c.created_at, c.eta), else_=c.created_at)
    oldest_pending = (
        sa.select(c.name, sa.func.min(waiting_since))
        .where(c.status == PENDING, sa.or_(c.eta.is_(None), c.eta <= now))
        .group_by(name)
    )
    wait = dialects.seconds_between(dialect, waiting_since, c.started_at)

    def histogram(value: Any) -> list[Any]:
        cumulative = [sa.func.sum(sa.case((value <= bound, 1), else_=0)) for bound in buckets]
        return [*cumulative, sa.func.count(value), sa.func.sum(value)]

    # A pending job that started before keeps that start (a retry): only a started one counts.
    histograms = (
        sa.select(c.name, *histogram(c.runtime), *histogram(wait))
        .where(
            c.status.in_((RUNNING, FINISHED, ERROR)),
            c.created_at >= since,
            c.started_at.is_not(None),
        )
        .group_by(c.name)
    )
    queries = {"totals": totals, "errors": errors, "oldest_pending": oldest_pending,
               "histograms": histograms}  # fmt: skip
    return {key: [tuple(row) for row in connection.execute(q)] for key, q in queries.items()}


def _grouping(column: Any, dialect: str) -> Any:
    """``column`` to group by. SQLite would read the whole table through the index on that
    column to save a sort (2.6 s instead of 0.75 s for 1,000,000 jobs, and a full read where
    the status index finds the few pending ones); a unary ``+`` makes it unindexable there."""
    if dialect != "sqlite":
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"))

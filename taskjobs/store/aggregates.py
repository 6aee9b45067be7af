"""The SQL behind the status report: counts, nearest-rank percentiles, ages. Portable SQL only
(window functions, no percentile_cont), so SQLite, PostgreSQL and MySQL give the same figures."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskjobs.store.tables import jobs

# Percentiles the report shows, in per cent.
PERCENTILES = (50, 95)


def seconds_between(dialect: str, start: Any, end: Any) -> Any:
    """SQL for the seconds from ``start`` to ``end`` (two timestamp columns) on ``dialect``."""
    if dialect == "postgresql":
        return sa.extract("epoch", end - start)
    if dialect in ("mysql", "mariadb"):
        return sa.func.timestampdiff(sa.text("MICROSECOND"), start, end) / 1_000_000.0
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86_400.0


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
    if connection.dialect.name == "postgresql":
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

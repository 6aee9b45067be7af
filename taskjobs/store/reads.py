"""Reads of jobs and their history, each returning frozen records: the one place a database row
becomes a ``Job`` or a ``Transition``."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from taskjobs.errors import InvalidInputError
from taskjobs.model import JOB_FIELDS, RUNNING, TEXT_FIELDS, Job
from taskjobs.store import dialects
from taskjobs.store.records import Transition
from taskjobs.store.tables import jobs, transitions


def job_from_row(row: sa.RowMapping) -> Job:
    """The one place a database row becomes a ``Job``."""
    fields = {name: row[name] for name in JOB_FIELDS}
    for name in TEXT_FIELDS:
        if fields[name] is None:
            fields[name] = ""
    if fields["retries"] is None:
        fields["retries"] = 0
    return Job(**fields)


def get(connection: sa.Connection, job_id: str) -> Job | None:
    """The job with this id, or None."""
    row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
    return None if row is None else job_from_row(row)


def select(
    connection: sa.Connection,
    *,
    status: str | None,
    name: str | None,
    user: str | None,
    worker: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
    after: str | None,
) -> list[Job]:
    """Jobs matching every given filter, newest first; ``after`` is the last id of a page."""
    query = sa.select(jobs)
    filters = (
        (jobs.c.status, status),
        (jobs.c.name, name),
        (jobs.c.user, user),
        (jobs.c.worker, worker),
    )
    for column, value in filters:
        if value == "":  # an unset text field reads as "", and is stored as NULL
            query = query.where(sa.or_(column.is_(None), column == ""))
        elif value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(jobs.c.created_at >= since)
    if until is not None:
        query = query.where(jobs.c.created_at < until)
    query = query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    if after is not None:
        created_at = connection.scalar(sa.select(jobs.c.created_at).where(jobs.c.id == after))
        if created_at is None:
            raise InvalidInputError(
                f"unknown job id {after!r} given as the page cursor 'after': "
                "pass the id of the last job of the previous page"
            )
        page = (jobs.c.created_at, jobs.c.id)
        query = query.where(dialects.before(connection.dialect.name, page, (created_at, after)))
    return [job_from_row(row) for row in connection.execute(query).mappings()]


def ids_starting_with(connection: sa.Connection, prefix: str, limit: int) -> list[str]:
    """Up to ``limit`` job ids that start with ``prefix`` (to resolve a shortened id)."""
    query = (
        sa.select(jobs.c.id)
        .where(jobs.c.id.startswith(prefix, autoescape=True))
        .order_by(jobs.c.id)
        .limit(limit)
    )
    return list(connection.scalars(query))


def history(connection: sa.Connection, job_id: str) -> list[Transition]:
    """Every transition of one job, oldest first."""
    t = transitions.c
    query = (
        sa.select(t.status, t.celery_state, t.worker, t.retries, t.at)
        .where(t.job_id == job_id)
        .order_by(t.id)
    )
    return [Transition(**row) for row in connection.execute(query).mappings()]


def running_by_worker(connection: sa.Connection) -> dict[str, int]:
    """How many jobs run now on each worker that runs any."""
    query = (
        sa.select(jobs.c.worker, sa.func.count())
        .where(jobs.c.status == RUNNING, jobs.c.worker.is_not(None))
        .group_by(jobs.c.worker)
    )
    return {worker: count for worker, count in connection.execute(query)}

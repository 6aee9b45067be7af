"""Reads of jobs and their history, each returning frozen records: the one place a database row
becomes a ``Job`` or a ``Transition``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from taskjobs.errors import InvalidInputError
from taskjobs.model import JOB_FIELDS, TEXT_FIELDS, Job
from taskjobs.store import dialects
from taskjobs.store.records import SORTABLE, JobQuery, Transition
from taskjobs.store.tables import IS_RUNNING, jobs, transitions


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


def select(connection: sa.Connection, query: JobQuery) -> list[Job]:
    """The jobs ``query`` asks for, in its order (ties broken by id, the same way)."""
    statement = _filtered(sa.select(jobs), query)
    column = jobs.c[query.sort]
    if query.ascending:
        statement = statement.order_by(column.asc(), jobs.c.id.asc())
    else:
        statement = statement.order_by(column.desc(), jobs.c.id.desc())
    if query.limit is not None:
        statement = statement.limit(query.limit)
    if query.offset:
        statement = statement.offset(query.offset)
    if query.after is not None:
        created_at = connection.scalar(sa.select(jobs.c.created_at).where(jobs.c.id == query.after))
        if created_at is None:
            raise InvalidInputError(
                f"unknown job id {query.after!r} given as the page cursor 'after': "
                "pass the id of the last job of the previous page"
            )
        page = (jobs.c.created_at, jobs.c.id)
        statement = statement.where(
            dialects.before(connection.dialect.name, page, (created_at, query.after))
        )
    return [job_from_row(row) for row in connection.execute(statement).mappings()]


def count_by_status(connection: sa.Connection, query: JobQuery) -> dict[str, int]:
    """How many jobs ``query`` matches, by status (its order and page are ignored)."""
    statement = _filtered(sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status), query)
    return {status: count for status, count in connection.execute(statement)}


def _filtered(statement: sa.Select[Any], query: JobQuery) -> sa.Select[Any]:
    """``statement`` limited to the jobs matching every filter of ``query``."""
    if query.sort not in SORTABLE:
        raise InvalidInputError(f"invalid sort {query.sort!r}: give one of {', '.join(SORTABLE)}")
    if query.after is not None and (query.sort, query.ascending) != ("created_at", False):
        raise InvalidInputError(
            "the page cursor 'after' pages the newest-first order only: "
            f"not sort {query.sort!r}{' ascending' if query.ascending else ''}"
        )
    equal = (
        (jobs.c.status, query.status),
        (jobs.c.celery_state, query.celery_state),
        (jobs.c.name, query.name),
        (jobs.c.user, query.user),
        (jobs.c.worker, query.worker),
        (jobs.c.parent_id, query.parent_id),
        (jobs.c.root_id, query.root_id),
        (jobs.c.group_id, query.group_id),
    )
    for column, value in equal:
        if value == "":  # an unset text field reads as "", and is stored as NULL
            statement = statement.where(sa.or_(column.is_(None), column == ""))
        elif value is not None:
            statement = statement.where(column == value)
    if query.celery_states is not None:
        statement = statement.where(jobs.c.celery_state.in_(query.celery_states))
    if query.id_prefix:
        statement = statement.where(jobs.c.id.startswith(query.id_prefix, autoescape=True))
    bounds = (
        (jobs.c.created_at, query.since, query.until),
        (jobs.c.received_at, query.received_since, query.received_until),
    )
    for column, low, high in bounds:
        if low is not None:
            statement = statement.where(column >= low)
        if high is not None:
            statement = statement.where(column < high)
    if query.search:
        columns = (jobs.c.id, jobs.c.name, jobs.c.request, jobs.c.result)
        statement = statement.where(
            sa.or_(*(c.contains(query.search, autoescape=True) for c in columns))
        )
    return statement


def ids_starting_with(connection: sa.Connection, prefix: str, limit: int) -> list[str]:
    """Up to ``limit`` job ids that start with ``prefix`` (to resolve a shortened id)."""
    query = (
        sa.select(jobs.c.id)
        .where(jobs.c.id.startswith(prefix, autoescape=True))
        .order_by(jobs.c.id)
        .limit(limit)
    )
    return list(connection.scalars(query))


def task_names(connection: sa.Connection, limit: int) -> list[str]:
    """The first ``limit`` distinct task names, in order: a skip scan of the name index (one
    index probe per name, however many jobs each has), as a recursive query."""
    name = jobs.c.name
    first = sa.select(sa.func.min(name).label("name")).cte("names", recursive=True)
    following = sa.select(sa.func.min(name)).where(name > first.c.name).scalar_subquery()
    names = first.union_all(sa.select(following).where(first.c.name.is_not(None)))
    query = sa.select(names.c.name).where(names.c.name.is_not(None)).limit(limit)
    return list(connection.scalars(query))


def child_ids(connection: sa.Connection, parent_ids: Collection[str]) -> dict[str, list[str]]:
    """The ids of the jobs each of ``parent_ids`` published, oldest first. Sorted here, not in
    SQL: an ORDER BY over several parents can tempt a planner into scanning every job in that
    order (SQLite does, once ANALYZE has seen that most jobs have no parent)."""
    if not parent_ids:
        return {}
    query = sa.select(jobs.c.parent_id, jobs.c.created_at, jobs.c.id).where(
        jobs.c.parent_id.in_(sorted(parent_ids))
    )
    children: dict[str, list[tuple[Any, str]]] = {}
    for parent_id, created_at, job_id in connection.execute(query):
        children.setdefault(parent_id, []).append((created_at, job_id))
    return {parent: [job_id for _, job_id in sorted(found)] for parent, found in children.items()}


def history(connection: sa.Connection, job_id: str) -> list[Transition]:
    """Every transition of one job, oldest first: by the time of its event (a publish or a
    receipt written late, after the task's start, still comes before it), then as written."""
    t = transitions.c
    query = (
        sa.select(t.status, t.celery_state, t.worker, t.retries, t.at)
        .where(t.job_id == job_id)
        .order_by(t.at, t.id)
    )
    return [Transition(**row) for row in connection.execute(query).mappings()]


def running_by_worker(connection: sa.Connection) -> dict[str, int]:
    """How many jobs run now on each worker that runs any."""
    query = (
        sa.select(jobs.c.worker, sa.func.count())
        .where(IS_RUNNING, jobs.c.worker.is_not(None))
        .group_by(jobs.c.worker)
    )
    return {worker: count for worker, count in connection.execute(query)}

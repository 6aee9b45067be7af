"""Deleting jobs, always with their history: one job, or old ones a batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskjobs.store.tables import jobs, transitions


def delete(connection: sa.Connection, job_id: str) -> bool:
    """Delete one job and its history; True if it existed."""
    deleted = connection.execute(sa.delete(jobs).where(jobs.c.id == job_id)).rowcount
    connection.execute(sa.delete(transitions).where(transitions.c.job_id == job_id))
    return bool(deleted)


def old(statuses: Sequence[str], before: datetime) -> Any:
    """The jobs in ``statuses`` created before ``before``."""
    return sa.and_(jobs.c.status.in_(list(statuses)), jobs.c.created_at < before)


def purge_batch(connection: sa.Connection, where: Any, batch_size: int) -> int | None:
    """Delete up to ``batch_size`` of the jobs matching ``where``, with their history; the
    count deleted, or None when none was left."""
    ids = list(connection.scalars(sa.select(jobs.c.id).where(where).limit(batch_size)))
    if not ids:
        return None
    # The jobs first, each only if it still matches (it may have moved on since it was read,
    # a lost job redelivered, say); then the history of those that are gone, not of one kept.
    deleted = int(connection.execute(sa.delete(jobs).where(jobs.c.id.in_(ids), where)).rowcount)
    kept = sa.exists().where(jobs.c.id == transitions.c.job_id)
    connection.execute(sa.delete(transitions).where(transitions.c.job_id.in_(ids), ~kept))
    return deleted

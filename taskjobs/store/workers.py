"""Workers and presumed ends in SQL: heartbeats, reaping the running jobs of silent workers, and
ending the queued jobs whose message is gone.

A loss or a vanished message is a presumed end of the job's attempt, not a true one: if the
message reaches a worker after all (a redelivery), the job moves on, and a true end reported
later still wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskjobs.model import (
    CELERY_LOST,
    CELERY_REPLACED,
    ERROR,
    PENDING,
    RUNNING,
    STAGE_PRESUMED_END,
    STAGES_PER_ATTEMPT,
    message_line,
)
from taskjobs.store import dialects
from taskjobs.store.records import Worker
from taskjobs.store.tables import jobs, workers
from taskjobs.store.writes import log_history

# The lock that lets one process at a time reap lost jobs: PostgreSQL's key ("taskreap"), and
# MySQL's name.
REAP_LOCK = 0x7461736B72656170
REAP_LOCK_NAME = "taskjobs_reap"


def heartbeat(
    connection: sa.Connection, name: str, *, hostname: str | None, pid: int | None, at: datetime
) -> None:
    """Record that worker ``name`` is alive at ``at`` (and not stopped)."""
    changes = {"hostname": hostname, "pid": pid, "last_seen": at, "stopped_at": None}
    row = {"name": name, "started_at": at, **changes}
    dialect = connection.dialect.name
    connection.execute(
        dialects.upsert(dialect, workers, row, "name", lambda _new: list(changes.items()))
    )


def list_workers(connection: sa.Connection) -> list[Worker]:
    """Every worker that ever sent a heartbeat, most recently seen first."""
    query = sa.select(workers).order_by(workers.c.last_seen.desc())
    return [Worker(**row) for row in connection.execute(query).mappings()]


def reap(
    connection: sa.Connection,
    *,
    silent_since: datetime | None,
    worker: str | None,
    at: datetime,
    reason: str,
) -> dict[str, int]:
    """Mark lost the running jobs of workers silent since before ``silent_since`` (or of
    ``worker``), and mark those workers stopped; returns {worker: jobs marked}.

    One process at a time looks for silent workers (a lock; others skip and get {}). A named
    worker's stop is recorded whoever holds the lock: skipped, it would leave a worker that
    shut down marked alive and its jobs running until reaped. Two processes marking the same
    jobs are safe: each UPDATE re-reads the rows it waited for, and logs only its own.
    """
    marked: dict[str, int] = {}
    with dialects.try_lock(connection, key=REAP_LOCK, name=REAP_LOCK_NAME) as held:
        if not held and worker is None:
            return marked
        if worker is not None:
            names = [worker]
        else:
            silent = sa.select(workers.c.name).where(
                workers.c.stopped_at.is_(None), workers.c.last_seen < silent_since
            )
            names = list(connection.scalars(silent))
        for name in names:
            marked[name] = _presume_ended(
                connection,
                jobs.c.worker == name,
                # A job its task replaced waits for other tasks, not for this worker.
                sa.and_(
                    jobs.c.status == RUNNING,
                    sa.func.coalesce(jobs.c.celery_state, "") != CELERY_REPLACED,
                ),
                celery_state=CELERY_LOST,
                exc_type="WorkerLost",
                note=f"worker lost: {name} {reason}",
                at=at,
            )
            if worker is None:  # silent, not stopped: what it had received comes back
                _note_waiting(connection, name, at)
            connection.execute(
                sa.update(workers).where(workers.c.name == name).values(stopped_at=at)
            )
    return marked


def _note_waiting(connection: sa.Connection, name: str, at: datetime) -> None:
    """The jobs a lost worker had received but not started stay pending (the broker delivers
    their messages again); their messages say why they wait."""
    note = message_line(
        f"worker lost: {name} stopped sending heartbeats before this task started; "
        "it waits for its message to be delivered again",
        at,
    )
    connection.execute(
        sa.update(jobs)
        .where(jobs.c.worker == name, jobs.c.status == PENDING, jobs.c.received_at.is_not(None))
        .values(messages=sa.func.coalesce(jobs.c.messages, "") + note)
    )


def queued_jobs(
    connection: sa.Connection, *, created_before: datetime, queues: Iterable[str] | None
) -> dict[str, list[str]]:
    """The ids of the pending jobs no worker received, created before ``created_before``,
    by queue (of ``queues``, or every queue), in the order of ids."""
    query = (
        sa.select(jobs.c.queue, jobs.c.id)
        .where(
            jobs.c.status == PENDING,
            jobs.c.received_at.is_(None),
            jobs.c.queue.is_not(None),
            jobs.c.created_at < created_before,
        )
        .order_by(jobs.c.id)
    )
    if queues is not None:
        query = query.where(jobs.c.queue.in_(list(queues)))
    found: dict[str, list[str]] = {}
    for queue, job_id in connection.execute(query):
        found.setdefault(queue, []).append(job_id)
    return found


def presume_queued_ended(
    connection: sa.Connection,
    *,
    queues: Sequence[str] | None,
    ids: Sequence[str] | None,
    created_before: datetime,
    celery_state: str,
    note: str,
    at: datetime,
) -> int:
    """End in error the jobs whose message is known to be gone from the broker before any
    worker took it: pending and not received, in one of ``queues`` or with one of ``ids``,
    created before ``created_before``. Returns how many."""
    scope = jobs.c.queue.in_(list(queues)) if queues is not None else jobs.c.id.in_(list(ids or ()))
    queued = sa.and_(
        jobs.c.status == PENDING,
        jobs.c.received_at.is_(None),
        jobs.c.created_at < created_before,
    )
    return _presume_ended(
        connection, scope, queued, celery_state=celery_state, exc_type=None, note=note, at=at
    )


def note_revoked(
    connection: sa.Connection, ids: Sequence[str], *, celery_state: str, note: str, at: datetime
) -> int:
    """A revoke was sent for ``ids``: the note goes in the messages of those still pending or
    running, and the pending ones take ``celery_state`` (the workers discard their messages
    when they get them, which ends them). Their order keys stay as they are, so the events
    that follow apply as before. Returns how many jobs took the note."""
    line = message_line(note, at)
    waiting = sa.and_(jobs.c.id.in_(list(ids)), jobs.c.status.in_([PENDING, RUNNING]))
    pending = jobs.c.status == PENDING
    result = connection.execute(
        sa.update(jobs)
        .where(waiting)
        .values(
            messages=sa.func.coalesce(jobs.c.messages, "") + line,
            celery_state=sa.case((pending, celery_state), else_=jobs.c.celery_state),
            updated_at=sa.case((pending, at), else_=jobs.c.updated_at),
        )
    )
    return int(result.rowcount)


def _presume_ended(
    connection: sa.Connection,
    scope: Any,
    condition: Any,
    *,
    celery_state: str,
    exc_type: str | None,
    note: str,
    at: datetime,
) -> int:
    """End in error, as a presumed end of their attempt, the jobs in ``scope`` that meet
    ``condition``; log their transitions; return how many."""
    c = jobs.c
    presumed_end = sa.case(
        (c.seq.is_(None), STAGE_PRESUMED_END),
        (
            c.seq % STAGES_PER_ATTEMPT < STAGE_PRESUMED_END,
            c.seq - c.seq % STAGES_PER_ATTEMPT + STAGE_PRESUMED_END,
        ),
        else_=c.seq,
    )
    line = message_line(note, at)
    ended = connection.execute(
        sa.update(jobs)
        .where(scope, condition)
        .values(
            status=ERROR,
            celery_state=celery_state,
            exc_type=exc_type,
            finished_at=at,
            updated_at=at,
            seq=presumed_end,
            messages=sa.func.coalesce(c.messages, "") + line,
        )
    ).rowcount
    if ended:
        connection.execute(
            log_history(
                connection.dialect.name,
                jobs,
                sa.and_(scope, c.updated_at == at, c.celery_state == celery_state),
            )
        )
    return int(ended)

"""The read side: what every reader of jobs needs, as frozen records.

The CLI renders these as text; a web page, a JSON API or metrics render the same ones. Each
function reads the store it is given (anything with the reads of ``JobReader``; by default the
configured store), and only that one.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from taskjobs.config import current_store
from taskjobs.errors import AmbiguousJobIdError, InvalidInputError, JobNotFoundError
from taskjobs.model import Job, check_job_id, check_state, utcnow
from taskjobs.report import DEFAULT_SLOW_AFTER, Report, build_report
from taskjobs.store import JobReader, Transition, Worker

# Jobs a listing returns unless told otherwise.
DEFAULT_LIMIT = 50
# Most jobs one listing returns.
MAX_LIMIT = 1_000_000
# Ids an error about an ambiguous shortened id names.
NAMED_MATCHES = 3

# What a worker's heartbeats say of it.
ALIVE = "alive"  # it beat within the timeout
SILENT = "silent"  # it has not beaten for longer than the timeout: it is presumed dead
STOPPED = "stopped"  # it said it stopped, or was found silent and its running jobs marked lost
WORKER_STATES = (ALIVE, SILENT, STOPPED)


@dataclasses.dataclass(frozen=True)
class JobWithHistory:
    """One job and every transition it went through, oldest first."""

    job: Job
    history: tuple[Transition, ...]


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of a listing, newest first."""

    jobs: tuple[Job, ...]
    # The ``after`` of the next page; None when no job comes after this page.
    next_after: str | None


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """A worker as its heartbeats describe it at a given time, and the jobs running on it."""

    worker: Worker
    state: str
    # Seconds from its last heartbeat to the time asked about.
    silent_for: float
    running: int


def find_job(job_id: str | int, store: JobReader | None = None) -> Job:
    """The job with this id, else the only job whose id starts with it.

    Raises ``JobNotFoundError`` when there is none, ``AmbiguousJobIdError`` when several ids
    start with it.
    """
    reader = store or current_store()
    job = reader.get(check_job_id(job_id))
    if job is not None:
        return job
    prefix = str(job_id)
    matches = reader.ids_starting_with(prefix, NAMED_MATCHES + 1)
    if len(matches) > 1:
        named = ", ".join(map(repr, matches[:NAMED_MATCHES]))
        more = " and more" if len(matches) > NAMED_MATCHES else ""
        raise AmbiguousJobIdError(
            f"job id prefix {prefix!r} is ambiguous: {named}{more} start with it; "
            "give more characters"
        )
    found = reader.get(matches[0]) if matches else None
    if found is None:  # none matched, or the one that did was deleted meanwhile
        raise JobNotFoundError(f"no job with id {prefix!r} (nor any id starting with it)")
    return found


def job_with_history(job_id: str | int, store: JobReader | None = None) -> JobWithHistory:
    """The job with this id (or unique id prefix, see ``find_job``) and its history."""
    reader = store or current_store()
    job = find_job(job_id, reader)
    return JobWithHistory(job, tuple(reader.history(job.id)))


def list_jobs(
    *,
    state: str | None = None,
    name: str | None = None,
    user: str | None = None,
    worker: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
    store: JobReader | None = None,
) -> Page:
    """Jobs matching every given filter, newest first: created in [since, until), at most
    ``limit`` of them, after the job ``after`` (the ``next_after`` of the previous page)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise InvalidInputError(
            f"invalid limit {limit!r}: give a whole number from 1 to {MAX_LIMIT}"
        )
    found = (store or current_store()).select(
        status=None if state is None else check_state(state),
        name=name,
        user=user,
        worker=worker,
        since=since,
        until=until,
        after=None if after is None else check_job_id(after),
        limit=limit + 1,  # one more tells whether a next page exists
    )
    jobs = tuple(found[:limit])
    return Page(jobs, jobs[-1].id if len(found) > limit else None)


def list_workers(
    *, timeout: float, at: datetime | None = None, store: JobReader | None = None
) -> list[WorkerStatus]:
    """Every worker that ever sent a heartbeat, most recently seen first: alive, silent for
    over ``timeout`` seconds, or stopped, at ``at`` (now), with its running jobs."""
    reader = store or current_store()
    now = at or utcnow()
    running = reader.running_by_worker()
    statuses = []
    for worker in reader.list_workers():
        silent_for = (now - worker.last_seen).total_seconds()
        if worker.stopped_at is not None:
            state = STOPPED
        elif silent_for > timeout:
            state = SILENT
        else:
            state = ALIVE
        statuses.append(WorkerStatus(worker, state, silent_for, running.get(worker.name, 0)))
    return statuses


def report(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    slow_after: timedelta = DEFAULT_SLOW_AFTER,
    store: JobReader | None = None,
) -> Report:
    """The status report over the jobs created in [since, until) (see ``taskjobs.report``)."""
    reader = store or current_store()
    return build_report(since=since, until=until, slow_after=slow_after, store=reader)

"""The read side: what every reader of jobs needs, as frozen records.

The CLI renders these as text; a web page, a JSON API or metrics render the same ones. Each
function reads the store it is given (anything with the reads of ``JobReader``; by default the
configured store), and only that one.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from taskjobs.config import current_store
from taskjobs.errors import AmbiguousJobIdError, InvalidInputError, JobNotFoundError
from taskjobs.model import (
    ERROR,
    FINISHED,
    IDLE,
    PENDING,
    RUNNING,
    Job,
    check_job_id,
    check_state,
    jsonable,
    utcnow,
)
from taskjobs.report import DEFAULT_SLOW_AFTER, Report, build_report
from taskjobs.store import JobQuery, JobReader, Transition, Worker

# Jobs a listing returns unless told otherwise.
DEFAULT_LIMIT = 50
# Most jobs one listing returns.
MAX_LIMIT = 1_000_000
# Ids an error about an ambiguous shortened id names.
NAMED_MATCHES = 3
# Most children and group members a workflow lists; the counts cover them all.
WORKFLOW_LIMIT = 200

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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"job": {...}, "history": [...]}``, times as ISO 8601."""
        history = [dataclasses.asdict(step) for step in self.history]
        data: dict[str, Any] = jsonable({"job": self.job.as_dict(), "history": history})
        return data


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of a listing, newest first."""

    jobs: tuple[Job, ...]
    # The ``after`` of the next page; None when no job comes after this page.
    next_after: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"jobs": [...], "next_after": ...}``, times as ISO 8601."""
        data: dict[str, Any] = jsonable(
            {"jobs": [job.as_dict() for job in self.jobs], "next_after": self.next_after}
        )
        return data


@dataclasses.dataclass(frozen=True)
class Workflow:
    """Where a job sits in its workflow (a canvas, or the tasks a task published), from the
    lineage Celery stamps on every message: its parent, its root, the jobs it published, the
    other members of its group, and the state of everything under its root."""

    job: Job
    # None when the job has none, or when that job is not stored (purged, or not tracked).
    parent: Job | None
    root: Job | None
    children: tuple[Job, ...]
    # The jobs of the job's group, itself included, oldest first.
    group: tuple[Job, ...]
    # The jobs under the root (the root itself included), by status.
    counts: dict[str, int]
    # The workflow's state as a whole (see ``rolled_up``).
    state: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the jobs as dicts (``null`` where not stored), times as ISO 8601."""

        def job(found: Job | None) -> dict[str, Any] | None:
            return None if found is None else found.as_dict()

        data: dict[str, Any] = jsonable({
            "job": self.job.as_dict(), "parent": job(self.parent), "root": job(self.root),
            "children": [j.as_dict() for j in self.children],
            "group": [j.as_dict() for j in self.group], "counts": self.counts, "state": self.state,
        })  # fmt: skip
        return data


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """A worker as its heartbeats describe it at a given time, and the jobs running on it."""

    worker: Worker
    state: str
    # Seconds from its last heartbeat to the time asked about.
    silent_for: float
    running: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the worker's fields, its state, silence and running jobs."""
        fields = {"state": self.state, "silent_for": self.silent_for, "running": self.running}
        data: dict[str, Any] = jsonable({**dataclasses.asdict(self.worker), **fields})
        return data


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


def search_jobs(query: JobQuery, store: JobReader | None = None) -> Page:
    """The jobs ``query`` asks for, at most its ``limit`` (``DEFAULT_LIMIT`` if it has
    none), and the cursor of the next page when it pages newest first."""
    limit = DEFAULT_LIMIT if query.limit is None else query.limit
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise InvalidInputError(
            f"invalid limit {limit!r}: give a whole number from 1 to {MAX_LIMIT}"
        )
    if query.status is not None:
        check_state(query.status)
    if query.after is not None:
        check_job_id(query.after)
    found = (store or current_store()).find(dataclasses.replace(query, limit=limit + 1))
    jobs = tuple(found[:limit])
    pages = (query.sort, query.ascending, query.offset) == ("created_at", False, 0)
    return Page(jobs, jobs[-1].id if len(found) > limit and pages else None)


def workflow(job_id: str | int, store: JobReader | None = None) -> Workflow:
    """The workflow of the job with this id (or unique id prefix, see ``find_job``)."""
    reader = store or current_store()
    job = find_job(job_id, reader)
    root_id = job.root_id or job.id
    parent = reader.get(job.parent_id) if job.parent_id else None
    root = job if root_id == job.id else reader.get(root_id)
    children = reader.find(JobQuery(parent_id=job.id, limit=WORKFLOW_LIMIT, ascending=True))
    group = (
        reader.find(JobQuery(group_id=job.group_id, limit=WORKFLOW_LIMIT, ascending=True))
        if job.group_id
        else []
    )
    counts = reader.count_by_status(JobQuery(root_id=root_id))
    if root is not None and root.root_id != root_id:  # a root stored without its own root_id
        counts[root.status] = counts.get(root.status, 0) + 1
    return Workflow(job, parent, root, tuple(children), tuple(group), counts, rolled_up(counts))


def rolled_up(counts: dict[str, int]) -> str:
    """The state of a workflow whose jobs are in these states: ``error`` once any failed,
    else ``running`` while any runs or waits after one has begun, ``pending`` while none
    has begun, ``finished`` when all finished."""
    present = {status for status, count in counts.items() if count}
    if not present:
        return IDLE
    if ERROR in present:
        return ERROR
    if present == {FINISHED}:
        return FINISHED
    if present <= {PENDING, IDLE}:
        return PENDING
    return RUNNING


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

"""The frozen records the store's reads return besides ``Job``: a job's transitions and the
workers' heartbeats. Pure Python, like ``taskjobs.model``."""

from __future__ import annotations

import dataclasses
from datetime import datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """One applied write of a job: the job's state right after it, and when."""

    status: str
    celery_state: str | None
    worker: str | None
    # The job's retry count at the time: attempt ``retries + 1``; None if never recorded.
    retries: int | None
    at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Worker:
    """A Celery worker node as its heartbeats left it."""

    name: str
    hostname: str | None
    pid: int | None
    started_at: datetime
    last_seen: datetime
    # When it stopped, or was found silent and its running jobs were marked lost.
    stopped_at: datetime | None


# The orders a selection of jobs can come in: a job column, newest (or largest) first unless
# the order is ``ascending``. Only the default, ``created_at`` descending, pages by keyset
# (``after``) and is served by an index for every filter; the others sort what the filters left.
SORTABLE = (
    "created_at",
    "received_at",
    "started_at",
    "finished_at",
    "updated_at",
    "runtime",
    "name",
    "status",
    "celery_state",
    "worker",
    "retries",
)


@dataclasses.dataclass(frozen=True, slots=True)
class JobQuery:
    """Which jobs to read: every given filter must hold. A text filter of ``""`` matches jobs
    where that field is empty.

    Times are ``[since, until)`` of ``created_at`` and ``[received_since, received_until)`` of
    ``received_at``; ``search`` is a case-sensitive substring of the id, name, request or
    result. ``after`` is the id of the last job of the previous page (default order only);
    ``offset`` skips that many jobs instead.
    """

    status: str | None = None
    celery_state: str | None = None
    # Any of these Celery states (with ``celery_state``, both must hold).
    celery_states: tuple[str, ...] | None = None
    name: str | None = None
    user: str | None = None
    worker: str | None = None
    id_prefix: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    received_since: datetime | None = None
    received_until: datetime | None = None
    search: str | None = None
    sort: str = "created_at"
    ascending: bool = False
    limit: int | None = None
    offset: int = 0
    after: str | None = None

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

"""What readers and writers need of a job store, as protocols: ``Store`` is the one in SQL;
a test, or a reader that needs only reads, can give anything with these methods."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from taskjobs.lifecycle import Event, Note
from taskjobs.model import Job
from taskjobs.store.records import JobQuery, Transition, Worker


class JobReader(Protocol):
    """The reads: jobs, their history, workers and the report's figures."""

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        ...

    def select(
        self,
        *,
        status: str | None = None,
        name: str | None = None,
        user: str | None = None,
        worker: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        after: str | None = None,
    ) -> list[Job]:
        """Jobs matching every given filter, newest first; ``after`` is the last id of a page."""
        ...

    def find(self, query: JobQuery) -> list[Job]:
        """The jobs ``query`` asks for, in its order."""
        ...

    def count_by_status(self, query: JobQuery) -> dict[str, int]:
        """How many jobs ``query`` matches, by status."""
        ...

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` job ids that start with ``prefix``, in id order."""
        ...

    def task_names(self, limit: int) -> list[str]:
        """The first ``limit`` distinct task names, in order."""
        ...

    def child_ids(self, parent_ids: Collection[str]) -> dict[str, list[str]]:
        """The ids of the jobs each of ``parent_ids`` published, oldest first."""
        ...

    def history(self, job_id: str) -> list[Transition]:
        """Every transition of one job, oldest first."""
        ...

    def list_workers(self) -> list[Worker]:
        """Every worker that ever sent a heartbeat, most recently seen first."""
        ...

    def running_by_worker(self) -> dict[str, int]:
        """How many jobs run now on each worker that runs any."""
        ...

    def report_rows(
        self, *, since: datetime, until: datetime, slow_before: datetime, slow_limit: int
    ) -> dict[str, Any]:
        """The raw figures of the status report (see ``taskjobs.report``)."""
        ...

    def metrics_rows(
        self, *, now: datetime, since: datetime, buckets: Sequence[float]
    ) -> dict[str, Any]:
        """The raw figures of the Prometheus metrics (see ``aggregates.metrics_rows``)."""
        ...


class JobStore(JobReader, Protocol):
    """The reads, and the writes the documented functions and the Celery layer make."""

    def apply(self, change: Event | Note, *, read_back: bool = False) -> Job | None:
        """Apply one lifecycle event or progress note, guarded by its order key."""
        ...

    def apply_all(self, changes: Sequence[Event | Note]) -> None:
        """Apply many changes in one transaction, each job's in the order given."""
        ...

    def append_message(self, job_id: str, text: str, at: datetime) -> bool:
        """Append to an existing job's ``messages``; False if there is no such job."""
        ...

    def batch(self) -> AbstractContextManager[None]:
        """Every call of this thread inside the block in one transaction."""
        ...

    def delete(self, job_id: str) -> bool:
        """Delete one job and its history; True if it existed."""
        ...

    def purge(
        self,
        *,
        statuses: Sequence[str],
        before: datetime,
        batch_size: int,
        max_batches: int | None = None,
    ) -> int:
        """Delete old jobs in ``statuses``, batch by batch; returns the count deleted."""
        ...

    def heartbeat(self, name: str, *, hostname: str | None, pid: int | None, at: datetime) -> None:
        """Record that worker ``name`` is alive at ``at``."""
        ...

    def reap(
        self, *, silent_since: datetime | None, worker: str | None, at: datetime, reason: str
    ) -> dict[str, int]:
        """Mark lost the running jobs of silent (or named) workers; {worker: jobs marked}."""
        ...

    def note_revoked(
        self, ids: Sequence[str], *, celery_state: str, note: str, at: datetime
    ) -> int:
        """A revoke was sent for ``ids``: note it on those pending or running."""
        ...

    def queued_jobs(
        self, *, created_before: datetime, queues: Iterable[str] | None = None
    ) -> dict[str, list[str]]:
        """The ids of the pending jobs no worker received, by queue."""
        ...

    def presume_queued_ended(
        self,
        *,
        queues: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        created_before: datetime,
        celery_state: str,
        note: str,
        at: datetime,
    ) -> int:
        """End in error the queued jobs whose message is gone from the broker; how many."""
        ...

"""``Store``: jobs in one database. It owns the engine and one transaction per call (or per
batch), and raises ``StoreError`` for database errors (``failures`` says what each means); the
SQL of each call lives in the module of its concept (``writes``, ``reads``, ``workers``,
``deletes``, ``aggregates``)."""

from __future__ import annotations

import itertools
import logging
import threading
import weakref
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import URL

from taskjobs.errors import StoreError
from taskjobs.lifecycle import Event, Note
from taskjobs.model import Job
from taskjobs.store import aggregates, deletes, dialects, reads, schema, stats, workers, writes
from taskjobs.store.engine import WRITE_OPTION, create_engine, parse_url, safe_url
from taskjobs.store.failures import store_error
from taskjobs.store.forkgate import GATE
from taskjobs.store.records import JobQuery, Transition, Worker

if TYPE_CHECKING:
    from taskjobs.store.protocol import JobStore


logger = logging.getLogger("taskjobs")

# A read that met this many changes no fold had moved folds them after it.
FOLD_ON_READ = 2_000
# Seconds a read waits for this process's queued writes before it goes on without them.
SETTLE_TIMEOUT = 2.0


class QueuedWrites(Protocol):
    """Writes queued in this process (a recorder) that can be written out on demand."""

    def flush(self, timeout: float) -> int: ...


class Store:
    """Jobs in one database, reached through a pooled engine of this process."""

    def __init__(self, url: str | URL) -> None:
        self.url = parse_url(url)
        self.engine = create_engine(self.url)
        self._writer = writes.Writer(self.engine.dialect.name)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        # The connection of the batch this thread is in, if any (see ``batch``).
        self._local = threading.local()
        # Writes queued in this process that this store's readers must see (see ``expect``).
        self._expected: weakref.WeakSet[QueuedWrites] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"Store({safe_url(self.url)!r})"

    def expect(self, queued: QueuedWrites) -> None:
        """Make reads and writes of this store first wait (briefly) for ``queued``: this
        process's queued publishes and transitions, which its own readers must see, and which
        must not be overtaken by a write this process makes after them."""
        self._expected.add(queued)

    def settle(self) -> None:
        """Wait (at most ``SETTLE_TIMEOUT`` seconds) until the expected queued writes are
        written; a writer thread of taskjobs' own never waits."""
        if not self._expected or getattr(threading.current_thread(), "taskjobs_writer", False):
            return
        for queued in list(self._expected):
            queued.flush(SETTLE_TIMEOUT)

    def apply(self, change: Event | Note, *, read_back: bool = False) -> Job | None:
        """Apply one lifecycle event (or progress note) built by ``taskjobs.lifecycle``: one
        guarded upsert and its history row, in one transaction (see ``Event`` for what each
        of its fields does). With ``read_back``, the job as stored after it, read in the same
        transaction."""
        self.settle()  # this process's writes land in the order it made them
        with self._transaction(write=True) as connection:
            if isinstance(change, Note):
                writes.append_message(connection, change.job_id, change.line, change.at)
            else:
                self._writer.write(connection, change)
            return reads.get(connection, change.job_id) if read_back else None

    def apply_all(self, changes: Sequence[Event | Note]) -> None:
        """Apply ``changes`` in one transaction, each job's in the order given, with as few
        statements as that order allows: the changes are taken in rounds (the first change of
        every job, then the second...), and each round's events of one shape are one statement
        run for many rows. Changes of different jobs touch different rows, so their order among
        themselves changes nothing."""
        self.settle()
        with self._transaction(write=True) as connection:
            for round_ in _rounds(changes):
                events = [change for change in round_ if isinstance(change, Event)]
                if events:
                    self._writer.write_all(connection, events)
                for note in round_:
                    if isinstance(note, Note):
                        writes.append_message(connection, note.job_id, note.line, note.at)

    def append_message(self, job_id: str, text: str, at: datetime) -> bool:
        """Append to an existing job's ``messages``; False if there is no such job."""
        with self._transaction(write=True) as connection:
            return writes.append_message(connection, job_id, text, at)

    def delete(self, job_id: str) -> bool:
        """Delete one job and its history; True if it existed."""
        self.settle()
        with self._transaction(write=True) as connection:
            return deletes.delete(connection, job_id)

    def purge(
        self,
        *,
        statuses: Sequence[str],
        before: datetime,
        batch_size: int,
        max_batches: int | None = None,
    ) -> int:
        """Delete jobs in ``statuses`` created before ``before``, one batch per transaction
        (all of them, or at most ``max_batches`` batches); returns the count deleted."""
        old = deletes.old(statuses, before)
        total = 0
        for _ in itertools.repeat(None) if max_batches is None else range(max_batches):
            with self._transaction(write=True) as connection:
                deleted = deletes.purge_batch(connection, old, batch_size)
            if deleted is None:
                break
            total += deleted
        return total

    def heartbeat(self, name: str, *, hostname: str | None, pid: int | None, at: datetime) -> None:
        """Record that worker ``name`` is alive at ``at`` (and not stopped)."""
        with self._transaction(write=True) as connection:
            workers.heartbeat(connection, name, hostname=hostname, pid=pid, at=at)

    def reap(
        self, *, silent_since: datetime | None, worker: str | None, at: datetime, reason: str
    ) -> dict[str, int]:
        """Mark lost the running jobs of workers silent since before ``silent_since`` (or of
        ``worker``), and mark those workers stopped; returns {worker: jobs marked}.

        One process at a time does this (a lock; others skip). The loss is a presumed end of the
        job's attempt: a redelivery of its message (acks_late) moves the job on again, and a true
        end reported later still wins.
        """
        with self._transaction(write=True) as connection:
            return workers.reap(
                connection, silent_since=silent_since, worker=worker, at=at, reason=reason
            )

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
        """End in error the jobs whose message is known to be gone from the broker before any
        worker took it: pending and not received, in one of ``queues`` or with one of ``ids``,
        created before ``created_before``. Returns how many. Like a loss, a presumed end: if
        the message does reach a worker after all, the job moves on."""
        self.settle()
        with self._transaction(write=True) as connection:
            return workers.presume_queued_ended(
                connection,
                queues=queues,
                ids=ids,
                created_before=created_before,
                celery_state=celery_state,
                note=note,
                at=at,
            )

    def note_revoked(
        self, ids: Sequence[str], *, celery_state: str, note: str, at: datetime
    ) -> int:
        """A revoke was sent for ``ids``: ``note`` goes in the messages of those pending or
        running, and the pending ones take ``celery_state``. Returns how many took the note."""
        if not ids:
            return 0
        self.settle()
        with self._transaction(write=True) as connection:
            return workers.note_revoked(
                connection, ids, celery_state=celery_state, note=note, at=at
            )

    def queued_jobs(
        self, *, created_before: datetime, queues: Iterable[str] | None = None
    ) -> dict[str, list[str]]:
        """The ids of the pending jobs no worker received, created before ``created_before``,
        by queue (of ``queues``, or every queue)."""
        with self._transaction() as connection:
            return workers.queued_jobs(connection, created_before=created_before, queues=queues)

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._transaction() as connection:
            return reads.get(connection, job_id)

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
        """Jobs matching every given filter, newest first; ``after`` is the last id of a page
        (an unknown one raises ``InvalidInputError``)."""
        return self.find(
            JobQuery(
                status=status,
                name=name,
                user=user,
                worker=worker,
                since=since,
                until=until,
                limit=limit,
                after=after,
            )
        )

    def find(self, query: JobQuery) -> list[Job]:
        """The jobs ``query`` asks for, in its order; a bad sort, or an ``after`` that is
        unknown or given with another order, raises ``InvalidInputError``."""
        with self._transaction() as connection:
            return reads.select(connection, query)

    def count_by_status(self, query: JobQuery) -> dict[str, int]:
        """How many jobs ``query`` matches, by status (states without jobs left out)."""
        with self._transaction() as connection:
            return reads.count_by_status(connection, query)

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` job ids that start with ``prefix`` (to resolve a shortened id)."""
        with self._transaction() as connection:
            return reads.ids_starting_with(connection, prefix, limit)

    def task_names(self, limit: int) -> list[str]:
        """The first ``limit`` distinct task names, in order."""
        with self._transaction() as connection:
            return reads.task_names(connection, limit)

    def child_ids(self, parent_ids: Collection[str]) -> dict[str, list[str]]:
        """The ids of the jobs each of ``parent_ids`` published, oldest first."""
        with self._transaction() as connection:
            return reads.child_ids(connection, parent_ids)

    def history(self, job_id: str) -> list[Transition]:
        """Every transition of one job, oldest first."""
        with self._transaction() as connection:
            return reads.history(connection, job_id)

    def list_workers(self) -> list[Worker]:
        """Every worker that ever sent a heartbeat, most recently seen first."""
        with self._transaction() as connection:
            return workers.list_workers(connection)

    def running_by_worker(self) -> dict[str, int]:
        """How many jobs run now on each worker that runs any."""
        with self._transaction() as connection:
            return reads.running_by_worker(connection)

    def report_rows(
        self, *, since: datetime, until: datetime, slow_before: datetime, slow_limit: int
    ) -> dict[str, Any]:
        """The raw figures of the status report, read in one snapshot (see ``taskjobs.report``).

        Window figures cover jobs created in [since, until), both on a minute (see
        ``stats.cover``); ``running``, ``oldest_pending`` and ``slow`` (running since before
        ``slow_before``) describe the store as it is now, and ``worker_last_seen`` the last
        heartbeat of each worker the other figures name.
        """
        with self._transaction(snapshot=True) as connection:
            rows = aggregates.report_rows(
                connection, since=since, until=until, slow_before=slow_before, slow_limit=slow_limit
            )
        self._fold_if_behind(rows["unfolded"])
        return rows

    def metrics_rows(
        self, *, now: datetime, since: datetime, buckets: Sequence[float]
    ) -> dict[str, Any]:
        """The raw figures of the Prometheus metrics, read in one snapshot: totals by name and
        state over every job, errors by name and exception, the oldest pending wait per name,
        and runtime and queue wait bucket counts per name over the jobs created since ``since``
        (see ``aggregates.metrics_rows``)."""
        with self._transaction(snapshot=True) as connection:
            rows = aggregates.metrics_rows(connection, now=now, since=since, buckets=buckets)
        self._fold_if_behind(rows["unfolded"])
        return rows

    def fold_stats(self, *, limit: int | None = None) -> int:
        """Move the logged changes of jobs' figures into the running aggregates, a batch per
        transaction, until none is left or ``limit`` moved; returns how many moved. Another
        process folding at the same time makes this one stop (its batch would wait)."""
        moved = 0
        while limit is None or moved < limit:
            batch = stats.FOLD_BATCH if limit is None else min(stats.FOLD_BATCH, limit - moved)
            try:
                with self._transaction(write=True) as connection:
                    done = stats.fold(connection, batch)
            except stats.ConcurrentFoldError as raced:
                logger.debug("taskjobs: a fold rolled back: %s", raced)
                break
            moved += done
            if done < batch:
                break
        return moved

    def _fold_if_behind(self, unfolded: int) -> None:
        """After a read that met many changes no fold had moved (no worker folds them, or the
        store was just upgraded), fold them, so the next read need not add them up again. A
        store this process cannot write (a read-only user, a replica) is only read."""
        if unfolded < FOLD_ON_READ:
            return
        try:
            self.fold_stats()
        except StoreError as exc:
            logger.debug("taskjobs: could not fold the running aggregates: %s", exc)

    def upgrade(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest version; returns (revision before, revision now)."""
        with self._errors("upgrade the schema"):
            return self._upgrade()

    def _upgrade(self) -> tuple[str | None, str | None]:
        before, now = schema.upgrade(self.engine, write_option={WRITE_OPTION: True})
        if schema.is_newer(now):
            logger.warning(
                "taskjobs: %s is at schema revision %s, which a newer taskjobs made; this one "
                "(revision %s) runs on it as it is",
                safe_url(self.url),
                now,
                schema.head_revision(),
            )
        self._schema_ready = True
        return before, now

    def revision(self) -> str | None:
        """The schema revision of the database (None for an empty one)."""
        with self._errors("read the schema revision"):
            return schema.current_revision(self.engine)

    def dispose(self) -> None:
        """Close every pooled connection of this store."""
        self.engine.dispose()

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self._upgrade()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run every store call of this thread inside the block in one transaction: committed
        at the end, or rolled back whole if anything in it fails."""
        if getattr(self._local, "connection", None) is not None:
            yield  # already in a batch
            return
        with self._transaction(write=True) as connection:
            self._local.connection = connection
            try:
                yield
            finally:
                self._local.connection = None

    @contextmanager
    def _transaction(
        self, *, write: bool = False, snapshot: bool = False
    ) -> Iterator[sa.Connection]:
        """One transaction, committed on success; database errors become ``StoreError``. With
        ``snapshot``, every statement of it sees the same committed state (SQLite's read
        transactions always do)."""
        batched: sa.Connection | None = getattr(self._local, "connection", None)
        if batched is not None:
            with self._errors("write jobs" if write else "read jobs"):
                yield batched
            return
        if not write:
            self.settle()  # readers see what this process has queued
        with self._errors("write jobs" if write else "read jobs"):
            self._ensure_schema()
            connection = self.engine.connect()
            if write:
                connection = connection.execution_options(**{WRITE_OPTION: True})
            if snapshot and dialects.snapshot_isolation(connection.dialect.name):
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            # A fork waits for a SQLite transaction to end (see ``forkgate``).
            gate = GATE.transaction() if self._sqlite else nullcontext()
            with gate, connection, connection.begin():
                yield connection

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            raise store_error(exc, operation, self.url) from exc


def _rounds(changes: Iterable[Event | Note]) -> list[list[Event | Note]]:
    """``changes`` split into rounds: the n-th round holds the n-th change of every job."""
    rounds: list[list[Event | Note]] = []
    seen: dict[str, int] = {}
    for change in changes:
        n = seen.get(change.job_id, 0)
        seen[change.job_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(change)
    return rounds


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def store_for(url: str | URL) -> Store:
    """The store of this process for ``url``, built on first use and then reused."""
    key = parse_url(url).render_as_string(hide_password=False)
    store = _stores.get(key)
    if store is None:
        with _stores_lock:
            store = _stores.setdefault(key, Store(key))
    return store


if TYPE_CHECKING:
    # Where mypy checks that a ``Store`` has everything its protocols name.
    _a_store_is_a_job_store: type[JobStore] = Store

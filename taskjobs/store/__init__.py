"""The job store: the only code that builds SQL. One transaction per call, own errors only."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL

from taskjobs.errors import InvalidInputError, StoreError
from taskjobs.model import (
    CELERY_LOST,
    CELERY_REPLACED,
    ERROR,
    JOB_FIELDS,
    PENDING,
    RUNNING,
    STAGE_PRESUMED_END,
    STAGES_PER_ATTEMPT,
    TEXT_FIELDS,
    Job,
)
from taskjobs.store import aggregates, schema
from taskjobs.store.engine import WRITE_OPTION, create_engine, make_fork_safe, parse_url, safe_url
from taskjobs.store.tables import jobs, transitions, workers

__all__ = ["Store", "make_fork_safe", "store_for"]


def _bind(name: str, column: str | None = None) -> Any:
    """A placeholder called ``name`` for a value of job column ``column`` (by default the
    column of that name), typed as the column."""
    return sa.bindparam(name, type_=jobs.c[column or name].type)


# The prefix of the placeholders of an UPDATE's values.
_NEW = "new_"


# Every write's time: the ``updated_at`` it sets, and how its history row recognizes it.
_UPDATED_AT = _bind("updated_at")
# The job columns a transition row copies, in the transitions table's order.
_HISTORY_COLUMNS = ("id", "status", "celery_state", "worker", "retries", "updated_at")
# Key of the advisory lock that lets one process at a time reap lost jobs (PostgreSQL).
REAP_LOCK = 0x7461736B72656170  # "taskreap"

# Each dialect's INSERT with an upsert clause.
_INSERTS: dict[str, Any] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
    "mysql": mysql.insert,
    "mariadb": mysql.insert,
}


@dataclasses.dataclass(frozen=True)
class _Shape:
    """What a write sets and how it is guarded: all its statement depends on."""

    values: tuple[str, ...]
    fill: tuple[str, ...]
    # Ordered by a lifecycle order key, and by the delivery it belongs to.
    ordered: bool
    delivered: bool
    # Ordered by the stage of the row's current attempt instead.
    stage: int | None
    appends: bool
    guard_message: bool
    existing_only: bool

    @property
    def names(self) -> list[str]:
        """The columns the statement binds, in order."""
        names = [*self.fill, *self.values, "id"]
        if self.ordered or self.stage is not None:
            names.append("seq")
        if self.delivered:
            names.append("delivery")
        if self.appends:
            names.append("messages")
        return names


def _assignments(shape: _Shape, new: Callable[[str], Any]) -> list[tuple[str, Any]]:
    """The SET clause of a write of ``shape``, ``new(column)`` being the value it brings.

    MySQL applies assignments left to right and later ones see earlier results, so the guard's
    own columns come last: ``seq``, then ``delivery`` (whose guard, seeing the new ``seq``,
    still holds exactly when the write moved to a later delivery, and otherwise keeps the
    value it has). An older event changes nothing the row has, but still fills what it lacks
    (a receipt time that arrives after the end).
    """
    current = jobs.c
    guard: Any = None
    new_seq: Any = None
    if shape.ordered:
        guard = sa.or_(current.seq.is_(None), current.seq < new("seq"))
        new_seq = new("seq")
        if shape.delivered:
            known = sa.func.coalesce(current.delivery, 0)
            guard = sa.or_(
                current.seq.is_(None),
                new("delivery") > known,
                sa.and_(new("delivery") == known, current.seq < new("seq")),
            )
    elif shape.stage is not None:
        # The row's attempt, kept; its stage moved on to ``stage`` if that is later.
        attempt_start = current.seq - current.seq % STAGES_PER_ATTEMPT
        guard = sa.or_(current.seq.is_(None), current.seq % STAGES_PER_ATTEMPT < shape.stage)
        new_seq = sa.case((current.seq.is_(None), new("seq")), else_=attempt_start + shape.stage)

    def guarded(column: str, value: Any, otherwise: Any = None) -> Any:
        if guard is None:
            return value
        return sa.case((guard, value), else_=current[column] if otherwise is None else otherwise)

    updates: list[tuple[str, Any]] = [
        (column, guarded(column, new(column), sa.func.coalesce(current[column], new(column))))
        for column in shape.values
    ]
    updates += [(column, sa.func.coalesce(current[column], new(column))) for column in shape.fill]
    if shape.appends:
        appended = sa.func.coalesce(current.messages, "") + new("messages")
        updates.append(
            ("messages", guarded("messages", appended) if shape.guard_message else appended)
        )
    if guard is not None:
        updates.append(("seq", guarded("seq", new_seq)))
    if shape.delivered:
        updates.append(("delivery", guarded("delivery", new("delivery"))))
    return updates


class Store:
    """Jobs in one database, reached through a pooled engine of this process."""

    def __init__(self, url: str | URL) -> None:
        self.url = parse_url(url)
        self.engine = create_engine(self.url)
        self._insert = _INSERTS[self.engine.dialect.name]
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        # The connection of the batch this thread is in, if any (see ``batch``).
        self._local = threading.local()
        # Write statements by shape (which columns, which guard), built once and reused.
        self._statements: dict[_Shape, Any] = {}
        # Outside PostgreSQL, the history insert that follows each upsert.
        self._history = self._log_transition(jobs, _UPDATED_AT, _bind("id"))

    def __repr__(self) -> str:
        return f"Store({safe_url(self.url)!r})"

    # -- writes ---------------------------------------------------------------------------------

    def write(
        self,
        job_id: str,
        values: Mapping[str, Any],
        *,
        fill: Mapping[str, Any] | None = None,
        seq: int | None = None,
        delivery: int | None = None,
        stage: int | None = None,
        message: str | None = None,
        guard_message: bool = False,
        existing_only: bool = False,
        read_back: bool = False,
    ) -> Job | None:
        """Insert or update one job in a single statement, and log the transition.

        ``values`` are set; ``fill`` columns are set only where the row has none yet. With
        ``seq`` (a lifecycle order key) ``values`` apply only if ``(delivery, seq)`` is newer
        than the row's: a later ``delivery`` (a message published later) always is, an unknown
        one (None) counts as the row's own; with ``stage`` instead, only if the row's current
        attempt is at an earlier stage (for events that do not know their attempt).
        ``message`` is appended to ``messages`` (only when ``values`` apply, if
        ``guard_message``). ``values`` carry ``updated_at``; when they applied, a transition row
        records the job's new state. With ``existing_only`` a job that does not exist is not
        created. With ``read_back`` the stored job is returned, read in the same transaction.
        """
        row: dict[str, Any] = {**(fill or {}), **values, "id": job_id}
        if seq is not None or stage is not None:
            row["seq"] = seq if seq is not None else stage
        if seq is not None and delivery is not None:
            row["delivery"] = delivery
        if message is not None:
            row["messages"] = message
        shape = _Shape(tuple(values), tuple(fill or ()), seq is not None,
                       seq is not None and delivery is not None, stage, message is not None,
                       guard_message, existing_only)  # fmt: skip
        statement = self._statements.get(shape)
        if statement is None:
            statement = self._statements.setdefault(shape, self._write_statement(shape))
        if existing_only:
            row = {_NEW + name: value for name, value in row.items()}
        with self._transaction(write=True) as connection:
            connection.execute(statement, row)
            if self.engine.dialect.name != "postgresql":
                connection.execute(
                    self._history, {"id": job_id, "updated_at": values["updated_at"]}
                )
            return self._get(connection, job_id) if read_back else None

    def _write_statement(self, shape: _Shape) -> Any:
        """The statement of every write of one shape, built once: an upsert (or an update), and
        on PostgreSQL the history insert too (the write is a CTE whose returned row feeds it)."""
        if shape.existing_only:
            write, at = self._update(shape), _bind(_NEW + "updated_at", "updated_at")
        else:
            write, at = self._upsert(shape), _UPDATED_AT
        if self.engine.dialect.name != "postgresql":
            return write
        up = write.returning(*(jobs.c[name] for name in _HISTORY_COLUMNS)).cte("up")
        return self._log_transition(up, at)

    def _log_transition(self, source: Any, at: Any, job_id: Any = None) -> Any:
        """Copy the job's state into the history if (and only if) this write applied: its row
        then carries this write's time."""
        columns = [source.c[name] for name in _HISTORY_COLUMNS]
        applied = source.c.updated_at == at
        if job_id is not None:
            applied = sa.and_(source.c.id == job_id, applied)
        return sa.insert(transitions).from_select(
            ["job_id", "status", "celery_state", "worker", "retries", "at"],
            sa.select(*columns).where(applied),
        )

    def _upsert(self, shape: _Shape) -> Any:
        """The INSERT ... ON CONFLICT / ON DUPLICATE KEY statement of one shape of write, its
        values bound by column name."""
        insert: Any = self._insert(jobs).values(
            {name: _UPDATED_AT if name == "updated_at" else _bind(name) for name in shape.names}
        )
        # The values this statement would have inserted, as the conflict clause sees them.
        new = insert.inserted if self._insert is mysql.insert else insert.excluded
        updates = _assignments(shape, lambda name: new[name])
        if isinstance(insert, mysql.Insert):
            return insert.on_duplicate_key_update(updates)
        return insert.on_conflict_do_update(index_elements=[jobs.c.id], set_=dict(updates))

    def _update(self, shape: _Shape) -> Any:
        """The UPDATE of one shape of write, for a job that must already exist (its values bound
        as ``new_<column>``: SQLAlchemy keeps plain column names for itself in an UPDATE)."""
        updates = _assignments(shape, lambda name: _bind(_NEW + name, name))
        # Assigned in order: MySQL's later assignments see the earlier ones (see _assignments).
        return sa.update(jobs).where(jobs.c.id == _bind(_NEW + "id", "id")).ordered_values(*updates)

    def append_message(self, job_id: str, text: str, at: datetime) -> bool:
        """Append to an existing job's ``messages``; False if there is no such job."""
        statement = (
            sa.update(jobs)
            .where(jobs.c.id == job_id)
            .values(messages=sa.func.coalesce(jobs.c.messages, "") + text, updated_at=at)
        )
        with self._transaction(write=True) as connection:
            return bool(connection.execute(statement).rowcount)

    def heartbeat(self, name: str, *, hostname: str | None, pid: int | None, at: datetime) -> None:
        """Record that worker ``name`` is alive at ``at`` (and not stopped)."""
        insert: Any = self._insert(workers).values(
            name=name, hostname=hostname, pid=pid, started_at=at, last_seen=at, stopped_at=None
        )
        changes = {"hostname": hostname, "pid": pid, "last_seen": at, "stopped_at": None}
        if isinstance(insert, mysql.Insert):
            statement = insert.on_duplicate_key_update(**changes)
        else:
            statement = insert.on_conflict_do_update(index_elements=[workers.c.name], set_=changes)
        with self._transaction(write=True) as connection:
            connection.execute(statement)

    def list_workers(self) -> list[dict[str, Any]]:
        """Every worker that ever sent a heartbeat, most recently seen first."""
        query = sa.select(workers).order_by(workers.c.last_seen.desc())
        with self._transaction() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def reap(
        self, *, silent_since: datetime | None, worker: str | None, at: datetime, reason: str
    ) -> dict[str, int]:
        """Mark lost the running jobs of workers silent since before ``silent_since`` (or of
        ``worker``), and mark those workers stopped; returns {worker: jobs marked}.

        One process at a time does this (a lock; others skip). The loss is a presumed end of the
        job's attempt: a redelivery of its message (acks_late) moves the job on again, and a true
        end reported later still wins.
        """
        marked: dict[str, int] = {}
        with self._transaction(write=True) as connection, self._reaper_lock(connection) as held:
            if not held:
                return marked
            if worker is not None:
                names = [worker]
            else:
                names = list(
                    connection.scalars(
                        sa.select(workers.c.name).where(
                            workers.c.stopped_at.is_(None), workers.c.last_seen < silent_since
                        )
                    )
                )
            for name in names:
                marked[name] = self._presume_ended(
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
                connection.execute(
                    sa.update(workers).where(workers.c.name == name).values(stopped_at=at)
                )
        return marked

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
        scope = (
            jobs.c.queue.in_(list(queues)) if queues is not None else jobs.c.id.in_(list(ids or ()))
        )
        queued = sa.and_(
            jobs.c.status == PENDING,
            jobs.c.received_at.is_(None),
            jobs.c.created_at < created_before,
        )
        with self._transaction(write=True) as connection:
            return self._presume_ended(
                connection,
                scope,
                queued,
                celery_state=celery_state,
                exc_type=None,
                note=note,
                at=at,
            )

    def queued_jobs(
        self, *, created_before: datetime, queues: Iterable[str] | None = None
    ) -> dict[str, list[str]]:
        """The ids of the pending jobs no worker received, created before ``created_before``,
        by queue (of ``queues``, or every queue)."""
        query = sa.select(jobs.c.queue, jobs.c.id).where(
            jobs.c.status == PENDING,
            jobs.c.received_at.is_(None),
            jobs.c.queue.is_not(None),
            jobs.c.created_at < created_before,
        )
        if queues is not None:
            query = query.where(jobs.c.queue.in_(list(queues)))
        found: dict[str, list[str]] = {}
        with self._transaction() as connection:
            for queue, job_id in connection.execute(query):
                found.setdefault(queue, []).append(job_id)
        return found

    def _presume_ended(
        self,
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
        line = f"[{at:%Y-%m-%dT%H:%M:%S}Z] {note}\n"
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
                sa.insert(transitions).from_select(
                    ["job_id", "status", "celery_state", "worker", "retries", "at"],
                    sa.select(
                        c.id, c.status, c.celery_state, c.worker, c.retries, c.updated_at
                    ).where(scope, c.updated_at == at, c.celery_state == celery_state),
                )
            )
        return int(ended)

    @contextmanager
    def _reaper_lock(self, connection: sa.Connection) -> Iterator[bool]:
        """Whether this process may reap now; SQLite's write lock already serializes."""
        dialect = connection.dialect.name
        if dialect == "postgresql":
            yield bool(connection.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(REAP_LOCK))))
        elif dialect in ("mysql", "mariadb"):
            held = bool(connection.scalar(sa.select(sa.func.get_lock("taskjobs_reap", 0))))
            try:
                yield held
            finally:
                if held:
                    connection.scalar(sa.select(sa.func.release_lock("taskjobs_reap")))
        else:
            yield True

    def delete(self, job_id: str) -> bool:
        """Delete one job and its history; True if it existed."""
        with self._transaction(write=True) as connection:
            deleted = connection.execute(sa.delete(jobs).where(jobs.c.id == job_id)).rowcount
            connection.execute(sa.delete(transitions).where(transitions.c.job_id == job_id))
        return bool(deleted)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._transaction() as connection:
            return self._get(connection, job_id)

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
        with self._transaction() as connection:
            if after is not None:
                created_at = connection.scalar(
                    sa.select(jobs.c.created_at).where(jobs.c.id == after)
                )
                if created_at is None:
                    raise InvalidInputError(
                        f"unknown job id {after!r} given as the page cursor 'after': "
                        "pass the id of the last job of the previous page"
                    )
                query = query.where(self._before(created_at, after))
            return [_job(row) for row in connection.execute(query).mappings()]

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` job ids that start with ``prefix`` (to resolve a shortened id)."""
        query = (
            sa.select(jobs.c.id)
            .where(jobs.c.id.startswith(prefix, autoescape=True))
            .order_by(jobs.c.id)
            .limit(limit)
        )
        with self._transaction() as connection:
            return list(connection.scalars(query))

    def report_rows(
        self, *, since: datetime, until: datetime, slow_before: datetime, slow_limit: int
    ) -> dict[str, Any]:
        """The raw figures of the status report, read in one transaction (see ``taskjobs.report``).

        Window figures cover jobs created in [since, until); ``running``, ``oldest_pending`` and
        ``slow`` (running since before ``slow_before``) describe the store as it is now.
        """
        c = jobs.c
        window = aggregates.in_window(since, until)
        wait = aggregates.seconds_between(self.engine.dialect.name, c.created_at, c.started_at)
        slow = (
            sa.select(jobs)
            .where(c.status == "running", c.started_at < slow_before)
            .order_by(c.started_at)
            .limit(slow_limit)
        )
        last_seen = (
            sa.select(c.worker, sa.func.max(c.updated_at))
            .where(window, c.worker.is_not(None))
            .group_by(c.worker)
        )
        with self._transaction() as connection:
            return {
                "by_name_and_status": aggregates.counts(connection, [c.name, c.status], window),
                "by_worker_and_status": aggregates.counts(
                    connection, [c.worker, c.status], sa.and_(window, c.worker.is_not(None))
                ),
                "running_by_worker": aggregates.counts(
                    connection, [c.worker], c.status == "running"
                ),
                "worker_last_seen": [tuple(row) for row in connection.execute(last_seen)],
                "exceptions": aggregates.counts(
                    connection, [c.exc_type], sa.and_(window, c.exc_type.is_not(None))
                ),
                "runtime": aggregates.percentiles(connection, c.runtime, window),
                "queue_wait": aggregates.percentiles(
                    connection, wait, sa.and_(window, c.started_at.is_not(None))
                ),
                "oldest_pending": aggregates.oldest(
                    connection, c.created_at, c.status == "pending"
                ),
                "slow": [_job(row) for row in connection.execute(slow).mappings()],
            }

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
        old = sa.and_(jobs.c.status.in_(list(statuses)), jobs.c.created_at < before)
        total = 0
        for _ in itertools.repeat(None) if max_batches is None else range(max_batches):
            with self._transaction(write=True) as connection:
                ids = list(connection.scalars(sa.select(jobs.c.id).where(old).limit(batch_size)))
                if not ids:
                    break
                connection.execute(sa.delete(transitions).where(transitions.c.job_id.in_(ids)))
                total += connection.execute(sa.delete(jobs).where(jobs.c.id.in_(ids), old)).rowcount
        return total

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """Every transition of one job, oldest first."""
        query = (
            sa.select(
                transitions.c.status,
                transitions.c.celery_state,
                transitions.c.worker,
                transitions.c.retries,
                transitions.c.at,
            )
            .where(transitions.c.job_id == job_id)
            .order_by(transitions.c.id)
        )
        with self._transaction() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    def _before(self, created_at: datetime, job_id: str) -> Any:
        """Rows after (created_at, id) in newest-first order, in the form each database's
        planner turns into an index range: a row-value comparison, or its expansion on MySQL."""
        c = jobs.c
        if self.engine.dialect.name in ("mysql", "mariadb"):
            return sa.or_(
                c.created_at < created_at, sa.and_(c.created_at == created_at, c.id < job_id)
            )
        return sa.tuple_(c.created_at, c.id) < sa.tuple_(created_at, job_id)

    def _get(self, connection: sa.Connection, job_id: str) -> Job | None:
        row = connection.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return None if row is None else _job(row)

    # -- plumbing -------------------------------------------------------------------------------

    def upgrade(self) -> tuple[str | None, str | None]:
        """Bring the schema to the newest version; returns (revision before, revision now)."""
        with self._errors("upgrade the schema"):
            return self._upgrade()

    def _upgrade(self) -> tuple[str | None, str | None]:
        before, now = schema.upgrade(self.engine, write_option={WRITE_OPTION: True})
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
    def _transaction(self, *, write: bool = False) -> Iterator[sa.Connection]:
        """One transaction, committed on success; database errors become ``StoreError``."""
        batched: sa.Connection | None = getattr(self._local, "connection", None)
        if batched is not None:
            with self._errors("write jobs" if write else "read jobs"):
                yield batched
            return
        with self._errors("write jobs" if write else "read jobs"):
            self._ensure_schema()
            connection = self.engine.connect()
            if write:
                connection = connection.execution_options(**{WRITE_OPTION: True})
            with connection, connection.begin():
                yield connection

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"could not {operation} in {safe_url(self.url)}: {_reason(exc)}",
                retryable=_unreachable(exc),
            ) from exc


def _job(row: sa.RowMapping) -> Job:
    """The one place a database row becomes a ``Job``."""
    fields = {name: row[name] for name in JOB_FIELDS}
    for name in TEXT_FIELDS:
        if fields[name] is None:
            fields[name] = ""
    if fields["retries"] is None:
        fields["retries"] = 0
    return Job(**fields)


def _unreachable(exc: sa.exc.SQLAlchemyError) -> bool:
    """Whether the error means the database could not be reached, not that the write was bad."""
    if getattr(exc, "connection_invalidated", False):
        return True
    return isinstance(
        exc,
        (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            sa.exc.DisconnectionError,
            sa.exc.TimeoutError,
        ),
    )


def _reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's own message, on one line, without SQLAlchemy's statement dump."""
    original = getattr(exc, "orig", None)
    text = str(original if original is not None else exc)
    return " ".join(text.split())[:500]


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

"""Writes to job rows: each one a single statement guarded by its order key (the order guard),
its applied state copied into the history, and the plain append of a message.

Lifecycle events arrive late or twice; a write older than the row changes nothing the row has,
in the same statement that writes it, so no read and no lock is needed (see ``assignments``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskjobs.lifecycle import Event
from taskjobs.model import STAGES_PER_ATTEMPT
from taskjobs.store import dialects
from taskjobs.store.tables import TRANSITION_KEY, jobs, transitions


def _bind(name: str, column: str | None = None) -> Any:
    """A placeholder called ``name`` for a value of job column ``column`` (by default the
    column of that name), typed as the column."""
    return sa.bindparam(name, type_=jobs.c[column or name].type)


# The prefix of the placeholders of an UPDATE's values.
_NEW = "new_"
# Every write's time: the ``updated_at`` it sets, and how its history row recognizes it.
_UPDATED_AT = _bind("updated_at")
# The job columns a transition row copies, and the transition columns they go to, in order.
HISTORY_COLUMNS = ("id", "status", "celery_state", "worker", "retries", "updated_at")
_TRANSITION_COLUMNS = ("job_id", "status", "celery_state", "worker", "retries", "at")
# The state a history row holds: what a late event logs of its own (see ``_late``).
_STATE_COLUMNS = HISTORY_COLUMNS[1:-1]
# What a run of a job sets: cleared when its id is published again and a new run starts (see
# ``assignments``), so that nothing of an earlier run is shown as the new one's.
RUN_COLUMNS = ("worker", "pid", "eta", "received_at", "started_at", "finished_at", "runtime",
               "result", "exc_type")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Shape:
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
    logged_late: bool

    @property
    def names(self) -> list[str]:
        """The columns the statement binds, in order, each once."""
        names = [*self.fill, *self.values, "id"]
        if self.ordered or self.stage is not None:
            names.append("seq")
        if self.delivered:
            names.append("delivery")
        if self.appends:
            names.append("messages")
        return list(dict.fromkeys(names))


def _inline(number: int) -> Any:
    """A constant written into a statement's text, not bound: PyMySQL turns a statement run
    for many rows into one multi-row INSERT, which it cannot do with placeholders after its
    VALUES."""
    return sa.literal_column(str(int(number)), sa.Integer)


def assignments(shape: Shape, new: Callable[[str], Any]) -> list[tuple[str, Any]]:
    """The SET clause of a write of ``shape``, ``new(column)`` being the value it brings.

    MySQL applies assignments left to right and later ones see earlier results, so the guard's
    own columns come last: ``seq``, then ``delivery`` (whose guard, seeing the new ``seq``,
    still holds exactly when the write moved to a later delivery, and otherwise keeps the
    value it has). An older event changes nothing the row has, but still fills what it lacks
    (a receipt time that arrives after the end), unless it belongs to an earlier delivery.

    A later delivery of a first attempt is the id published again: a new run. It clears what
    the earlier run set (``RUN_COLUMNS``) where it does not set it itself, and dates the job
    from the new run (``_dated``); a retry (a later delivery of a later attempt) is the same
    run, and keeps them.
    """
    current = jobs.c
    guard: Any = None
    new_seq: Any = None
    fills: Any = None  # whether a refused event may fill what the row lacks (None: always)
    starts_over: Any = None
    if shape.ordered:
        guard = sa.or_(current.seq.is_(None), current.seq < new("seq"))
        new_seq = new("seq")
        if shape.delivered:
            known = sa.func.coalesce(current.delivery, _inline(0))
            guard = sa.or_(
                current.seq.is_(None),
                new("delivery") > known,
                sa.and_(new("delivery") == known, current.seq < new("seq")),
            )
            fills = new("delivery") >= known
            starts_over = sa.and_(
                current.seq.is_not(None),
                new("delivery") > known,
                new("seq") < _inline(STAGES_PER_ATTEMPT),
            )
    elif shape.stage is not None:
        # The row's attempt, kept; its stage moved on to ``stage`` if that is later.
        stage = current.seq % _inline(STAGES_PER_ATTEMPT)
        guard = sa.or_(current.seq.is_(None), stage < _inline(shape.stage))
        new_seq = sa.case(
            (current.seq.is_(None), new("seq")), else_=current.seq - stage + _inline(shape.stage)
        )

    def guarded(column: str, value: Any, otherwise: Any = None) -> Any:
        if guard is None:
            return value
        return sa.case((guard, value), else_=current[column] if otherwise is None else otherwise)

    def late_fill(column: str) -> Any:
        """What an event the guard refuses leaves in ``column``: the row's value, or the
        event's where the row has none (not an earlier delivery's)."""
        either = sa.func.coalesce(current[column], new(column))
        return either if fills is None else sa.case((fills, either), else_=current[column])

    updates: list[tuple[str, Any]] = [
        (column, guarded(column, new(column), late_fill(column))) for column in shape.values
    ]
    updates += [
        (column, _dated(current, new, starts_over, fills) if column == "created_at"
                 else _filled(current[column], new(column)))
        for column in shape.fill
    ]  # fmt: skip
    if shape.appends:
        appended = sa.func.coalesce(current.messages, sa.literal_column("''")) + new("messages")
        updates.append(
            ("messages", guarded("messages", appended) if shape.guard_message else appended)
        )
    if starts_over is not None:
        updates += [
            (column, sa.case((starts_over, sa.null()), else_=current[column]))
            for column in RUN_COLUMNS
            if column not in shape.values
        ]
    if guard is not None:
        updates.append(("seq", guarded("seq", new_seq)))
    if shape.delivered:
        updates.append(("delivery", guarded("delivery", new("delivery"))))
    return updates


def log_history(dialect: str, source: Any, applied: Any) -> Any:
    """Copy into the history the state of the ``source`` rows (jobs, or the rows a write
    returned) that match ``applied``."""
    return _insert_history(dialect, _logged(source, applied))


def _insert_history(dialect: str, rows: Any) -> Any:
    """Insert ``rows`` (job id, state, time) into the history, each unless it is there: the
    unique index on the step skips it.

    Two writes of one step may run at once: the publisher's and the worker's of one publish
    (the worker writes it from the message, in case the publisher's is late or lost). A probe
    of the history (``_unlogged``, which SQLite and MySQL keep) reads it as it was when its
    statement began on PostgreSQL, before it waited for the job's row: the index is what keeps
    the second write from logging the step again."""
    return dialects.insert_new(dialect, transitions, _TRANSITION_COLUMNS, rows, TRANSITION_KEY)


def _logged(source: Any, applied: Any, probe: bool = True) -> Any:
    """The history rows of the ``source`` rows that match ``applied``: their state, unless the
    history holds it already (the same write applied again: a commit whose answer was lost, or
    one event written by two processes); see ``_unlogged`` for ``probe``."""
    row = source.c
    return sa.select(*(row[name] for name in HISTORY_COLUMNS)).where(
        applied, _unlogged(row.id, row.celery_state, row.updated_at, probe)
    )


def _late(source: Any, state: dict[str, Any], at: Any, probe: bool = True) -> Any:
    """The history row of a ``logged_late`` event that did not apply: for the ``source`` row
    (jobs, or the row its write returned) if its time is not the event's ``at``, the event's
    own ``state`` at ``at``, unless the history holds it already."""
    return sa.select(
        source.c.id, state["status"], state["celery_state"], state["worker"], state["retries"], at
    ).where(source.c.updated_at != at, _unlogged(source.c.id, state["celery_state"], at, probe))


def _unlogged(job_id: Any, celery_state: Any, at: Any, probe: bool) -> Any:
    """Whether the history of job ``job_id`` lacks ``celery_state`` at ``at``: a probe of the
    history, or (``probe`` False) left to the insert's conflict on the step's unique index,
    which skips the same rows (a step with no Celery state is never a repeat, in either)."""
    if not probe:
        return sa.true()
    t = transitions.c
    return ~sa.exists().where(t.job_id == job_id, t.celery_state == celery_state, t.at == at)


class Writer:
    """The job writes of one dialect: each shape's statement built once, then reused."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._statements: dict[tuple[Shape, bool], Any] = {}
        # Where one statement cannot do both, the history insert that follows each write, and
        # the one that follows each ``logged_late`` write (see ``_late``).
        self._history = log_history(
            dialect, jobs, sa.and_(jobs.c.id == _bind("id"), jobs.c.updated_at == _UPDATED_AT)
        )
        # The same for many events, their ids and times bound as lists: built once, it costs
        # a batch half the Python of building the statement anew (20 events on SQLite).
        self._histories = log_history(
            dialect,
            jobs,
            sa.and_(
                # The ids alone too: the key's range, for MySQL.
                jobs.c.id.in_(sa.bindparam("ids", expanding=True)),
                sa.tuple_(jobs.c.id, jobs.c.updated_at).in_(
                    sa.bindparam("written", expanding=True)
                ),
            ),
        )
        late = {name: _bind(name) for name in _STATE_COLUMNS}
        self._late_history = _insert_history(
            dialect, _late(jobs, late, _UPDATED_AT).where(jobs.c.id == _bind("id"))
        )

    def write(self, connection: sa.Connection, event: Event) -> None:
        """Insert or update one job, and log the transition if it applied."""
        self.write_all(connection, [event])

    def write_all(self, connection: sa.Connection, events: Sequence[Event]) -> None:
        """Write ``events``, each of a different job, as ``write`` would one by one: one
        statement per shape of write, run once for all its rows on PostgreSQL (bound as one
        JSON parameter) and elsewhere for many (PyMySQL sends them as one multi-row INSERT),
        in the order of job ids, the order in which concurrent writers then take row locks."""
        by_shape: dict[Shape, list[dict[str, Any]]] = {}
        for event in sorted(events, key=lambda event: event.job_id):
            shape, row = _row(event)
            by_shape.setdefault(shape, []).append(row)
        for shape, rows in by_shape.items():
            # PostgreSQL takes many rows as one JSON parameter, and one row as plain values:
            # with every write in the JSON form, the "grouped" mode (whose pool processes write
            # one row at a time) cost PostgreSQL more CPU a task in the saturation benchmark.
            batch = len(rows) > 1 and dialects.json_batches(self.dialect)
            statement = self._statements.get((shape, batch))
            if statement is None:
                statement = self._statement(shape, batch)
                statement = self._statements.setdefault((shape, batch), statement)
            if batch:
                connection.execute(statement, dialects.batch_of(rows))
                continue
            if shape.existing_only:  # an UPDATE's values are named ``new_<column>``
                rows = [{_NEW + name: value for name, value in row.items()} for row in rows]
            connection.execute(statement, rows if len(rows) > 1 else rows[0])
        if not dialects.writable_cte(self.dialect) and self._log_history(connection, events):
            late = [_late_row(event) for event in events if event.logged_late]
            if late:
                connection.execute(self._late_history, late if len(late) > 1 else late[0])

    def _log_history(self, connection: sa.Connection, events: Sequence[Event]) -> bool:
        """Where the write cannot log its own history row: copy the rows that carry each
        event's time (those it applied to) into the history, in one statement. True if some
        event did not apply."""
        if len(events) == 1:
            (event,) = events
            logged = connection.execute(
                self._history, {"id": event.job_id, "updated_at": _at(event)}
            )
        else:
            logged = connection.execute(
                self._histories,
                {
                    "ids": [event.job_id for event in events],
                    "written": [(event.job_id, _at(event)) for event in events],
                },
            )
        return logged.rowcount < len(events)

    def _statement(self, shape: Shape, batch: bool) -> Any:
        """The statement of the writes of one shape: an upsert (or an update), of one row, or
        with ``batch`` of all the rows bound (see ``dialects.unnested``); where the dialect
        allows, with the history inserts in the same statement (the write is a CTE whose
        returned rows feed them)."""
        value: Callable[[str], Any]
        if batch:
            rows = dialects.unnested(jobs, shape.names)
            value, own = (lambda name: rows.c[name]), rows.c.id
            if shape.existing_only:
                updates = assignments(shape, value)
                # Assigned in order, as in ``_update``.
                write = sa.update(jobs).where(jobs.c.id == own).ordered_values(*updates)
            else:
                write = dialects.upsert(
                    self.dialect, jobs, sa.select(rows), "id",
                    lambda new: assignments(shape, lambda name: new[name]),
                )  # fmt: skip
        else:
            new = _NEW if shape.existing_only else ""
            value, own = (lambda name: _bind(new + name, name)), None
            write = self._update(shape) if shape.existing_only else self._upsert(shape)
            if not dialects.writable_cte(self.dialect):
                return write
        at = value("updated_at")
        up = write.returning(*(jobs.c[name] for name in HISTORY_COLUMNS)).cte("up")
        # A row of the write's, each with the values that wrote it.
        mine = sa.true() if own is None else up.c.id == own
        # No probe of the history: in one statement (PostgreSQL) the insert's conflict on the
        # step's unique index does its work. The probe also cost a plan: prepared while the
        # history was empty (a new store), it read the whole history at every write until the
        # table was analyzed (saturation benchmark, a new store's first seconds: 2.0 against
        # 1.0 ms of PostgreSQL's CPU a task).
        logged = _logged(up, sa.and_(mine, up.c.updated_at == at), probe=False)
        if shape.logged_late:
            state = {
                name: value(name) if name in shape.values else sa.null() for name in _STATE_COLUMNS
            }
            logged = sa.union_all(logged, _late(up, state, at, probe=False).where(mine))
        return _insert_history(self.dialect, logged)

    def _upsert(self, shape: Shape) -> Any:
        """The INSERT ... ON CONFLICT / ON DUPLICATE KEY statement of one shape of write, its
        values bound by column name."""
        values = {
            name: _UPDATED_AT if name == "updated_at" else _bind(name) for name in shape.names
        }
        return dialects.upsert(
            self.dialect, jobs, values, "id", lambda new: assignments(shape, lambda c: new[c])
        )

    def _update(self, shape: Shape) -> Any:
        """The UPDATE of one shape of write, for a job that must already exist (its values bound
        as ``new_<column>``: SQLAlchemy keeps plain column names for itself in an UPDATE)."""
        updates = assignments(shape, lambda name: _bind(_NEW + name, name))
        # Assigned in order: MySQL's later assignments see the earlier ones (see assignments).
        return sa.update(jobs).where(jobs.c.id == _bind(_NEW + "id", "id")).ordered_values(*updates)


def _at(event: Event) -> datetime:
    """The ``updated_at`` that ``event``'s write sets."""
    at: datetime = event.values.get("updated_at", event.at)  # as ``Event.columns`` sets it
    return at


def _row(event: Event) -> tuple[Shape, dict[str, Any]]:
    """The shape of ``event``'s write and the values its statement binds."""
    values, fill = event.columns(), event.fill_columns()
    row: dict[str, Any] = {**fill, **values, "id": event.job_id}
    seq, stage = event.seq, event.stage
    if seq is not None or stage is not None:
        row["seq"] = seq if seq is not None else stage
    if seq is not None and event.delivery is not None:
        row["delivery"] = event.delivery
    if event.message is not None:
        row["messages"] = event.message
    shape = Shape(tuple(values), tuple(fill), seq is not None,
                  seq is not None and event.delivery is not None, stage,
                  event.message is not None, event.guard_message,
                  event.existing_only, event.logged_late)  # fmt: skip
    return shape, row


def _late_row(event: Event) -> dict[str, Any]:
    """The values of the history insert that follows a ``logged_late`` event's write."""
    state = {name: event.values.get(name) for name in _STATE_COLUMNS}
    return {**state, "status": event.state, "id": event.job_id, "updated_at": _at(event)}


def append_message(connection: sa.Connection, job_id: str, text: str, at: datetime) -> bool:
    """Append to an existing job's ``messages``; False if there is no such job."""
    statement = (
        sa.update(jobs)
        .where(jobs.c.id == job_id)
        .values(messages=sa.func.coalesce(jobs.c.messages, "") + text, updated_at=at)
    )
    return bool(connection.execute(statement).rowcount)


def _dated(current: Any, new: Callable[[str], Any], starts_over: Any, fills: Any) -> Any:
    """What ``created_at`` becomes: the earliest time any event of the job's current run
    brings (``_filled``), its publish's once that arrives. A new run (``starts_over``) dates
    the job afresh, and an earlier delivery's late event dates it no earlier."""
    earliest = _filled(current.created_at, new("created_at"))
    if starts_over is None:
        return earliest
    return sa.case((starts_over, new("created_at")), (fills, earliest), else_=current.created_at)


def _filled(current: Any, new: Any) -> Any:
    """What a fill-only column becomes: the row's value where it has one, else the event's; for
    ``created_at``, the earlier of the two (a publish written after the worker's receipt, as an
    asynchronous publish may be, still dates the job from its publish)."""
    if current.name != "created_at":
        return sa.func.coalesce(current, new)
    return sa.case((sa.or_(current.is_(None), new < current), new), else_=current)

"""The running aggregates gain buckets of four hours, and their change log a table of its own,
one row per change.

A day's report summed about 123,000 aggregate rows on 1,000,000 jobs, 116,000 of them the
hourly run time and wait histograms; whole four-hour buckets hold less than half as many.

The fold is what fills the buckets, and during a rolling upgrade the workers of the release
before keep folding, without the new width: whatever they folded would be missing from it for
good. So the triggers now log into a new table, ``taskjobs_stat_log``, which only this release's
folds read; the old table is drained into it and left empty (the old folds find nothing to do),
and the four-hour buckets are added up from the hourly ones in the same step, with no fold
running: from then on every change counts in every width exactly once.

The new log keeps a change in one row, the job's figures before it and after it, where the old
one wrote a row for each side: an update of a job's figures, the most frequent change, writes
one row instead of two.

Each database takes the step its own way, so that no job's change is missed while the triggers
are swapped and no fold runs meanwhile:
- PostgreSQL: the folds' advisory lock first (waiting for a running fold to end), the
  four-hour buckets added up while tasks write on, then the triggers swapped and the old log
  drained, all in the migration's transaction (task writes wait for its commit from the swap on).
- SQLite: the migration's transaction holds the database's one write lock throughout.
- MySQL and MariaDB, where each DDL statement commits by itself: the folds' named lock, then
  ``LOCK TABLES`` on the aggregates while the four-hour buckets are added up (which also waits
  for a fold still committing: a fold releases the named lock just before its commit), then on
  the jobs, both logs and the aggregates for the swap and the drain, so task writes wait for
  those alone; the user needs the ``LOCK TABLES`` privilege.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlalchemy as sa
from alembic import op

from taskjobs.store.tables import BigId, UTCDateTime, binary_collation

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JOBS, OLD_LOG, LOG, STATS = (
    "taskjobs_jobs", "taskjobs_stat_changes", "taskjobs_stat_log", "taskjobs_stats"
)  # fmt: skip
# The job columns a change copies as they are; the Celery state only while the job is in error.
COPIED = ("name", "status", "worker", "exc_type", "retries", "created_at", "eta", "started_at",
          "finished_at", "runtime")  # fmt: skip
FIGURES = (*COPIED, "celery_state")
EVENTS = ("insert", "update", "delete")
HOUR, FOUR_HOURS = 3600, 14400
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The folds' locks (taskjobs.store.stats' FOLD_LOCK and FOLD_LOCK_NAME) as this revision
# knows them, and the seconds MySQL's waits for a running fold.
FOLD_LOCK, FOLD_LOCK_NAME, FOLD_WAIT = 0x7461736B666F6C64, "taskjobs_fold", 600
# The kinds of figure kept in hourly buckets (the ones counted where a job was created).
HOURLY_KINDS = ("state", "worker", "exception", "runtime", "wait")


def _figure_columns(prefix: str) -> list[sa.Column[Any]]:
    key = 255
    types: dict[str, Any] = {
        "name": sa.String(key), "status": sa.String(16), "worker": sa.String(key),
        "exc_type": sa.String(key), "retries": sa.Integer, "created_at": UTCDateTime,
        "eta": UTCDateTime, "started_at": UTCDateTime, "finished_at": UTCDateTime,
        "runtime": sa.Float, "celery_state": sa.String(32),
    }  # fmt: skip
    return [sa.Column(f"{prefix}{figure}", types[figure], nullable=True) for figure in FIGURES]


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    op.create_table(
        LOG,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        *_figure_columns("old_"),
        *_figure_columns("new_"),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
        **binary_collation(bind.dialect),
    )
    with _no_fold(bind):
        _add_up_four_hours(bind)
        # From here to the commit (PostgreSQL, whose DROP TRIGGER locks the jobs' table) or to
        # UNLOCK TABLES (MySQL), task writes wait: the swap, and the drain of the few changes
        # no fold had moved yet.
        with _no_write(bind):
            for statement in _drop_triggers(
                dialect, "taskjobs_stats_", "taskjobs_note_stat_change"
            ):
                op.execute(statement)
            for statement in _trigger_ddl(dialect):
                op.execute(statement)
            # Each old row was one side of a change: before (-1) or after (+1).
            old, new = _columns("old_"), _columns("new_")
            sides = [f"CASE WHEN sign < 0 THEN {f} END" for f in FIGURES]
            sides += [f"CASE WHEN sign > 0 THEN {f} END" for f in FIGURES]
            op.execute(
                f"INSERT INTO {LOG} ({old}, {new}) "
                f"SELECT {', '.join(sides)} FROM {OLD_LOG} ORDER BY id"
            )
            op.execute(f"DELETE FROM {OLD_LOG}")


def downgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    with _no_fold(bind), _no_write(bind):
        for statement in _drop_triggers(dialect, "taskjobs_stat_log_", "taskjobs_log_stat_change"):
            op.execute(statement)
        for statement in _revision_0007()._trigger_ddl(dialect):
            op.execute(statement)
        columns = ", ".join(FIGURES)
        for sign, prefix in ((-1, "old_"), (1, "new_")):
            op.execute(
                f"INSERT INTO {OLD_LOG} (sign, {columns}) SELECT {sign}, {_columns(prefix)} "
                f"FROM {LOG} WHERE {prefix}status IS NOT NULL ORDER BY id"
            )
        op.execute(f"DELETE FROM {STATS} WHERE width = {FOUR_HOURS}")
    op.drop_table(LOG)


@contextmanager
def _no_fold(bind: sa.Connection) -> Iterator[None]:
    """No fold runs inside the block, and none that started before it is still writing."""
    dialect = bind.dialect.name
    if dialect == "postgresql":
        # Held to the end of the migration's transaction; a fold takes it without waiting.
        bind.execute(sa.select(sa.func.pg_advisory_xact_lock(FOLD_LOCK)))
        yield
    elif dialect in ("mysql", "mariadb"):
        # The folds' named lock keeps new ones from starting; a fold releases it just before
        # its commit, and only a table lock waits for that commit.
        if not bind.scalar(sa.select(sa.func.get_lock(FOLD_LOCK_NAME, FOLD_WAIT))):
            raise RuntimeError(f"a fold held {FOLD_LOCK_NAME!r} for {FOLD_WAIT} s: try again")
        try:
            bind.exec_driver_sql(f"LOCK TABLES {STATS} WRITE")
            yield
        finally:
            bind.exec_driver_sql("UNLOCK TABLES")
            bind.execute(sa.select(sa.func.release_lock(FOLD_LOCK_NAME)))
    else:
        yield  # SQLite: the migration's transaction holds the one write lock


@contextmanager
def _no_write(bind: sa.Connection) -> Iterator[None]:
    """No job is written inside the block. PostgreSQL's and SQLite's DDL is transactional:
    their trigger swap needs nothing more. MySQL's commits each statement: a job written
    between the old triggers' drop and the new ones' creation would go unlogged."""
    if bind.dialect.name in ("mysql", "mariadb"):
        tables = ", ".join(f"{table} WRITE" for table in (JOBS, OLD_LOG, LOG, STATS))
        bind.exec_driver_sql(f"LOCK TABLES {tables}")  # in place of _no_fold's
        try:
            yield
        finally:
            bind.exec_driver_sql("UNLOCK TABLES")
    else:
        yield


def _add_up_four_hours(bind: sa.Connection) -> None:
    """The four-hour buckets, from the hourly ones: one statement per kind and bucket, each a
    range of the aggregates' primary key (kind, width, bucket start, ...)."""
    stats = sa.table(
        STATS,
        *(sa.column(name) for name in ("kind", "width", "name", "label", "jobs", "total")),
        sa.column("bucket_start", UTCDateTime()),
    )
    c = stats.c
    for kind in HOURLY_KINDS:
        hourly = sa.select(c.bucket_start).where(c.kind == kind, c.width == HOUR).distinct()
        for start in sorted({_four_hours(hour) for hour in bind.execute(hourly).scalars()}):
            query = (
                sa.select(c.name, c.label, sa.func.sum(c.jobs), sa.func.sum(c.total))
                .where(c.kind == kind, c.width == HOUR, c.bucket_start >= start,
                       c.bucket_start < start + timedelta(seconds=FOUR_HOURS))
                .group_by(c.name, c.label)
            )  # fmt: skip
            rows = [
                {"kind": kind, "width": FOUR_HOURS, "bucket_start": start, "name": name,
                 "label": label, "jobs": jobs, "total": total}
                for name, label, jobs, total in bind.execute(query)
                if jobs or total
            ]  # fmt: skip
            if rows:
                bind.execute(stats.insert(), rows)


def _four_hours(at: datetime) -> datetime:
    seconds = int((at - EPOCH).total_seconds() // FOUR_HOURS) * FOUR_HOURS
    return EPOCH + timedelta(seconds=seconds)


def _columns(prefix: str) -> str:
    return ", ".join(f"{prefix}{figure}" for figure in FIGURES)


def _side(row: str) -> list[str]:
    """SQL for each figure of ``row`` (``NEW.`` or ``OLD.``), in the order of ``FIGURES``."""
    celery_state = f"CASE WHEN {row}status = 'error' THEN {row}celery_state END"
    return [*(f"{row}{column}" for column in COPIED), celery_state]


def _insert(*rows: str) -> str:
    """The INSERT of one change: the figures of ``OLD.``, ``NEW.`` or both."""
    columns = ", ".join(_columns(row.lower().replace(".", "_")) for row in rows)
    values = ", ".join(value for row in rows for value in _side(row))
    return f"INSERT INTO {LOG} ({columns}) VALUES ({values})"


def _changed(same: str) -> str:
    """SQL that is true when an update changed a figure; ``same`` spells the dialect's
    NULL-safe equality of its two operands."""
    pairs = zip(_side("OLD."), _side("NEW."), strict=True)
    return "NOT (" + " AND ".join(same.format(old, new) for old, new in pairs) + ")"


def _trigger_ddl(dialect: str) -> list[str]:
    """The statements that make the database log every change of a job's figures."""
    insert, update, delete = _insert("NEW."), _insert("OLD.", "NEW."), _insert("OLD.")
    names = {event: f"taskjobs_stat_log_{event}" for event in EVENTS}
    if dialect == "postgresql":
        function = f"""
            CREATE FUNCTION taskjobs_log_stat_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN {insert};
                ELSIF TG_OP = 'DELETE' THEN {delete};
                ELSE {update};
                END IF;
                RETURN NULL;
            END $$"""
        run = "EXECUTE FUNCTION taskjobs_log_stat_change()"
        changed = _changed("({0}) IS NOT DISTINCT FROM ({1})")
        return [
            function,
            f"CREATE TRIGGER {names['insert']} AFTER INSERT ON {JOBS} FOR EACH ROW {run}",
            f"CREATE TRIGGER {names['update']} AFTER UPDATE ON {JOBS} FOR EACH ROW "
            f"WHEN ({changed}) {run}",
            f"CREATE TRIGGER {names['delete']} AFTER DELETE ON {JOBS} FOR EACH ROW {run}",
        ]
    if dialect in ("mysql", "mariadb"):
        changed = _changed("({0}) <=> ({1})")
        return [
            f"CREATE TRIGGER {names['insert']} AFTER INSERT ON {JOBS} FOR EACH ROW {insert}",
            f"CREATE TRIGGER {names['update']} AFTER UPDATE ON {JOBS} FOR EACH ROW "
            f"BEGIN IF {changed} THEN {update}; END IF; END",
            f"CREATE TRIGGER {names['delete']} AFTER DELETE ON {JOBS} FOR EACH ROW {delete}",
        ]
    changed = _changed("({0}) IS ({1})")
    return [
        f"CREATE TRIGGER {names['insert']} AFTER INSERT ON {JOBS} FOR EACH ROW BEGIN {insert}; END",
        f"CREATE TRIGGER {names['update']} AFTER UPDATE ON {JOBS} FOR EACH ROW "
        f"WHEN {changed} BEGIN {update}; END",
        f"CREATE TRIGGER {names['delete']} AFTER DELETE ON {JOBS} FOR EACH ROW BEGIN {delete}; END",
    ]


def _drop_triggers(dialect: str, prefix: str, function: str) -> list[str]:
    """The statements that drop the triggers named ``prefix`` + event, and PostgreSQL's
    ``function`` they run."""
    if dialect == "postgresql":
        drops = [f"DROP TRIGGER IF EXISTS {prefix}{event} ON {JOBS}" for event in EVENTS]
        return [*drops, f"DROP FUNCTION IF EXISTS {function}()"]
    return [f"DROP TRIGGER IF EXISTS {prefix}{event}" for event in EVENTS]


def _revision_0007() -> ModuleType:
    """Migration 0007, whose triggers a downgrade puts back as they were."""
    path = Path(__file__).with_name("0007_running_stats.py")
    spec = importlib.util.spec_from_file_location("taskjobs_migration_0007", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

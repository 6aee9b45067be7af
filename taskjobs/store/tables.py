"""The tables, as SQLAlchemy Core metadata. Migrations under ``migrations/`` build the same."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from taskjobs.model import MAX_KEY_LENGTH, PENDING, RUNNING
from taskjobs.store.dialects import MYSQL, is_mysql, naive_utc

JOBS_TABLE = "taskjobs_jobs"
TRANSITIONS_TABLE = "taskjobs_transitions"
WORKERS_TABLE = "taskjobs_workers"
# Alembic's version table for our schema, named so it never meets an application's own.
VERSION_TABLE = "taskjobs_alembic_version"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in every database (microseconds kept on MySQL)."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if is_mysql(dialect.name):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


# Unbounded text: TEXT on PostgreSQL and SQLite, LONGTEXT (4 GB) on MySQL where TEXT is 64 KB.
LongText = sa.Text().with_variant(mysql.LONGTEXT(), *MYSQL)
# Seconds, as a double-precision number on every database: ``Float`` is one on PostgreSQL and
# SQLite, but a single-precision FLOAT on MySQL and MariaDB (seven significant digits; 0012).
Seconds = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), *MYSQL)


def binary_collation(dialect: Dialect) -> dict[str, Any]:
    """Table options that make MySQL compare ids byte for byte (case and trailing spaces count)."""
    if not is_mysql(dialect.name):
        return {}
    if getattr(dialect, "is_mariadb", False):
        return {"mysql_collate": "utf8mb4_nopad_bin"}
    return {"mysql_collate": "utf8mb4_0900_bin"}


def key_column(name: str, **kwargs: Any) -> sa.Column[str]:
    """A bounded string column that can be indexed on every database."""
    return sa.Column(name, sa.String(MAX_KEY_LENGTH), **kwargs)


metadata = sa.MetaData()

jobs = sa.Table(
    JOBS_TABLE,
    metadata,
    key_column("id", primary_key=True),
    # Documented fields. NULL means "never set" and reads as the schema default.
    key_column("name", nullable=True),
    key_column("user", nullable=True),
    sa.Column("request", LongText, nullable=True),
    sa.Column("result", LongText, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("messages", LongText, nullable=True),
    # What the Celery layer records.
    sa.Column("celery_state", sa.String(32), nullable=True),
    key_column("worker", nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    key_column("queue", nullable=True),
    sa.Column("retries", sa.Integer, nullable=True),
    key_column("parent_id", nullable=True),
    key_column("root_id", nullable=True),
    key_column("group_id", nullable=True),
    sa.Column("eta", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("runtime", Seconds, nullable=True),
    # The exception class of an error, for grouping failures.
    key_column("exc_type", nullable=True),
    # The lifecycle order key of the newest automatic write (see ``model.order_key``).
    sa.Column("seq", sa.Integer, nullable=True),
    # Which publish of the job's id that key belongs to (see ``model.order_key``): a message
    # published later starts the lifecycle over. NULL when no tracked publisher stamped it.
    sa.Column("delivery", sa.BigInteger, nullable=True),
    # Newest-first pages, optionally of one status, name or user: ordered by (created_at, id).
    sa.Index("ix_taskjobs_jobs_status_page", "status", "created_at", "id"),
    sa.Index("ix_taskjobs_jobs_name_page", "name", "created_at", "id"),
    sa.Index("ix_taskjobs_jobs_user_page", "user", "created_at", "id"),
    sa.Index("ix_taskjobs_jobs_page", "created_at", "id"),
    # A worker's jobs in a state (its running ones), a workflow's children, members and jobs,
    # and the jobs in one Celery state, in the same order.
    sa.Index("ix_taskjobs_jobs_worker_page", "worker", "status", "created_at", "id"),
    sa.Index("ix_taskjobs_jobs_parent_page", "parent_id", "created_at", "id"),
    sa.Index("ix_taskjobs_jobs_root_page", "root_id", "created_at", "id"),
    sa.Index("ix_taskjobs_jobs_group_page", "group_id", "created_at", "id"),
    sa.Index("ix_taskjobs_jobs_celery_state_page", "celery_state", "created_at", "id"),
    # The jobs running now, oldest start first, with their worker: the long-running list and
    # the per-worker counts read this alone. Partial where the database can (only running
    # rows, so the other states' writes never touch it); MySQL indexes every job.
    sa.Index(
        "ix_taskjobs_jobs_running",
        "status",
        "started_at",
        "worker",
        postgresql_where=sa.text(f"status = '{RUNNING}'"),
        sqlite_where=sa.text(f"status = '{RUNNING}'"),
    ),
    # The pending jobs per task name, oldest first, with their ETA: the metrics' longest wait
    # per task reads this alone. Partial, as the running jobs' index is.
    sa.Index(
        "ix_taskjobs_jobs_pending",
        "status",
        "name",
        "created_at",
        "eta",
        postgresql_where=sa.text(f"status = '{PENDING}'"),
        sqlite_where=sa.text(f"status = '{PENDING}'"),
    ),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)

# "The job runs now" and "the job waits", spelled with the literals the partial indexes name:
# with a bound parameter the planner could not tell that the rows a query wants are all there.
IS_RUNNING = jobs.c.status == sa.literal_column(f"'{RUNNING}'")
IS_PENDING = jobs.c.status == sa.literal_column(f"'{PENDING}'")

# Big enough for a transition log that grows forever; SQLite's rowid is already 64-bit.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# What makes a history row one step of its job's: the job, the time and the Celery state. A
# step written twice at once (by the publisher and by the worker that received its message)
# is one row: the index refuses the second (see ``writes.log_history``), and reads a job's
# history by its first column.
TRANSITION_KEY = ("job_id", "at", "celery_state")

# One row per applied write to a job: its state after the write, when, where, which attempt.
transitions = sa.Table(
    TRANSITIONS_TABLE,
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    key_column("job_id", nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("celery_state", sa.String(32), nullable=True),
    key_column("worker", nullable=True),
    sa.Column("retries", sa.Integer, nullable=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ux_taskjobs_transitions_step", *TRANSITION_KEY, unique=True),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)

# One row per Celery worker node that ever ran tracked tasks: its heartbeat.
workers = sa.Table(
    WORKERS_TABLE,
    metadata,
    key_column("name", primary_key=True),
    key_column("hostname", nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("last_seen", UTCDateTime, nullable=False),
    # Set when the worker stopped, or was found silent and its running jobs marked lost.
    sa.Column("stopped_at", UTCDateTime, nullable=True),
    sa.Index("ix_taskjobs_workers_last_seen", "last_seen"),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)

STAT_CHANGES_TABLE = "taskjobs_stat_changes"
STAT_LOG_TABLE = "taskjobs_stat_log"
STATS_TABLE = "taskjobs_stats"

# The figures of a job that a change of it counts, with their types: the columns of ``jobs`` it
# copies, the Celery state only while the job is in error (a lost or revoked job).
STAT_FIGURES: dict[str, sa.types.TypeEngine[Any]] = {
    "name": sa.String(MAX_KEY_LENGTH),
    "status": sa.String(16),
    "worker": sa.String(MAX_KEY_LENGTH),
    "exc_type": sa.String(MAX_KEY_LENGTH),
    "retries": sa.Integer(),
    "created_at": UTCDateTime(),
    "eta": UTCDateTime(),
    "started_at": UTCDateTime(),
    "finished_at": UTCDateTime(),
    "runtime": Seconds,
    "celery_state": sa.String(32),
}


# Retired by migration 0011 (which moved its rows to ``stat_log``), and kept, empty, for the
# release before it: its workers' folds read this table during a rolling upgrade and find
# nothing to fold. Each row held one side of a change (sign -1 before, +1 after).
stat_changes = sa.Table(
    STAT_CHANGES_TABLE,
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("sign", sa.SmallInteger, nullable=False),
    key_column("name", nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    key_column("worker", nullable=True),
    key_column("exc_type", nullable=True),
    # The job's Celery state while it is in error (a lost or revoked job), else NULL.
    sa.Column("celery_state", sa.String(32), nullable=True),
    sa.Column("retries", sa.Integer, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("eta", UTCDateTime, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("runtime", Seconds, nullable=True),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)

# One change of a job's figures: what they were before it and what they are after it. The
# database writes these rows itself (triggers, see migration 0011) whenever a job is inserted,
# deleted, or changed in one of ``STAT_FIGURES``, and ``stats.fold`` moves them into ``stats``.
stat_log = sa.Table(
    STAT_LOG_TABLE,
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    # What the job's figures were before the change (all NULL for an insert) and are after it
    # (all NULL for a delete): ``status`` is never NULL in a job.
    *(sa.Column(f"old_{figure}", kind, nullable=True) for figure, kind in STAT_FIGURES.items()),
    *(sa.Column(f"new_{figure}", kind, nullable=True) for figure, kind in STAT_FIGURES.items()),
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)

# Running aggregates of the jobs: per time bucket (``width`` seconds from ``bucket_start``; width
# 0 is all time), kind of figure, task (or worker) name and label (a state, an exception, or a
# histogram bin's upper bound): how many jobs, and the sum of the kind's value.
stats = sa.Table(
    STATS_TABLE,
    metadata,
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("bucket_start", UTCDateTime, nullable=False),
    key_column("name", nullable=False),
    key_column("label", nullable=False),
    sa.Column("jobs", sa.BigInteger, nullable=False),
    sa.Column("total", sa.Double, nullable=False),
    # In this order, a kind's buckets of one width are one range of the key, read from the key
    # alone (migration 0008): it carries the figures on PostgreSQL, and the rows are stored in
    # its order on SQLite (no rowid) and on InnoDB.
    sa.PrimaryKeyConstraint(
        "kind", "width", "bucket_start", "name", "label", postgresql_include=["jobs", "total"]
    ),
    sqlite_with_rowid=False,
    mysql_charset="utf8mb4",
    mysql_engine="InnoDB",
)

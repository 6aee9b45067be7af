"""The running aggregates read from their primary key alone: a window's figures are ranges of
``taskjobs_stats``' key, and reading the rows those ranges name from the heap cost most of the
report's time (about 60 scattered rows a bucket and task name for each histogram).

PostgreSQL: the key carries ``jobs`` and ``total`` (``INCLUDE``), so a window is an index-only
scan. SQLite: the table is stored in key order (``WITHOUT ROWID``). MySQL and MariaDB: nothing
to do, InnoDB already keeps a table's rows in its primary key.

On PostgreSQL and SQLite this rewrites the table under an exclusive lock: folds and reports
wait for it, the workers' writes do not (they only add to ``taskjobs_stat_changes``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATS = "taskjobs_stats"
KEY = "kind, width, bucket_start, name, label"


def upgrade() -> None:
    _rebuild(covering=True)


def downgrade() -> None:
    _rebuild(covering=False)


def _rebuild(*, covering: bool) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        include = " INCLUDE (jobs, total)" if covering else ""
        op.execute(
            f"ALTER TABLE {STATS} DROP CONSTRAINT {STATS}_pkey, "
            f"ADD CONSTRAINT {STATS}_pkey PRIMARY KEY ({KEY}){include}"
        )
    elif dialect == "sqlite":
        with op.batch_alter_table(
            STATS, recreate="always", table_kwargs={"sqlite_with_rowid": not covering}
        ):
            pass

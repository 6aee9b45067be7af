"""A job's history holds each of its steps once: a unique index on (job, time, Celery state).

The publisher and the worker both write a task's publish, the worker from the message it
received. On PostgreSQL the two writes could run at once and both log the publish, the same
step twice in the history (the second write's check of the history read it as it was before
that write waited for the job's row). The index makes the second insert a no-op instead.

The upgrade first deletes the rows that repeat a step (keeping the first one written), then
builds the unique index and drops the index it replaces, on (job, row id): the new one serves
the reads of a job's history as well. A Celery state left empty is not a step of Celery's:
such rows are never taken as repeats, as before.

Building the index reads the whole history, and writes to it wait meanwhile (README,
"Migration 0013").

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

TABLE = "taskjobs_transitions"
KEY = ("job_id", "at", "celery_state")
OLD_INDEX, NEW_INDEX = "ix_taskjobs_transitions_job_id", "ux_taskjobs_transitions_step"


def upgrade() -> None:
    _delete_repeats()
    op.create_index(NEW_INDEX, TABLE, list(KEY), unique=True)
    op.drop_index(OLD_INDEX, TABLE)


def downgrade() -> None:
    op.create_index(OLD_INDEX, TABLE, ["job_id", "id"])
    op.drop_index(NEW_INDEX, TABLE)


def _delete_repeats() -> None:
    """Delete each history row that repeats an earlier row's job, time and Celery state."""
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        # MySQL cannot read, in a DELETE's subquery, the table it deletes from: a join.
        same = " AND ".join(f"later.{column} = first.{column}" for column in KEY)
        op.execute(
            f"DELETE later FROM {TABLE} AS later JOIN {TABLE} AS first "
            f"ON {same} AND first.id < later.id"
        )
        return
    same = " AND ".join(f"first.{column} = {TABLE}.{column}" for column in KEY)
    op.execute(
        f"DELETE FROM {TABLE} WHERE EXISTS "
        f"(SELECT 1 FROM {TABLE} AS first WHERE {same} AND first.id < {TABLE}.id)"
    )

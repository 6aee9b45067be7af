"""An index of the running jobs, by the time each started: the report's and the dashboard's
"running longer than" list reads its oldest entries in order, and the jobs running on each
worker are counted from it alone, instead of reading every running job's row.

PostgreSQL and SQLite: a partial index (``WHERE status = 'running'``), so it holds only the
jobs running now and costs nothing on the writes of the other states. MySQL and MariaDB have
no partial indexes: there it indexes every job, ``status`` first.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    op.create_index(
        "ix_taskjobs_jobs_running",
        "taskjobs_jobs",
        ["status", "started_at", "worker"],
        postgresql_where=RUNNING,
        sqlite_where=RUNNING,
    )


def downgrade() -> None:
    op.drop_index("ix_taskjobs_jobs_running", "taskjobs_jobs")

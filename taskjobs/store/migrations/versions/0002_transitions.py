"""The transition history, and the exception type of failed jobs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskjobs.store.tables import UTCDateTime, binary_collation

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key = sa.String(255)
    op.add_column("taskjobs_jobs", sa.Column("exc_type", key, nullable=True))
    op.create_table(
        "taskjobs_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("job_id", key, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("celery_state", sa.String(32), nullable=True),
        sa.Column("worker", key, nullable=True),
        sa.Column("retries", sa.Integer, nullable=True),
        sa.Column("at", UTCDateTime, nullable=False),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
        **binary_collation(op.get_bind().dialect),
    )
    op.create_index("ix_taskjobs_transitions_job_id", "taskjobs_transitions", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("taskjobs_transitions")
    op.drop_column("taskjobs_jobs", "exc_type")

"""Worker heartbeats, so that jobs of a worker that died can be found and marked lost.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskjobs.store.tables import UTCDateTime, binary_collation

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    key = sa.String(255)
    op.create_table(
        "taskjobs_workers",
        sa.Column("name", key, primary_key=True),
        sa.Column("hostname", key, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("stopped_at", UTCDateTime, nullable=True),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
        **binary_collation(op.get_bind().dialect),
    )
    op.create_index("ix_taskjobs_workers_last_seen", "taskjobs_workers", ["last_seen"])


def downgrade() -> None:
    op.drop_table("taskjobs_workers")

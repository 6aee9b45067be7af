"""The jobs table.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskjobs.store.tables import LongText, UTCDateTime, binary_collation

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    key = sa.String(255)
    op.create_table(
        "taskjobs_jobs",
        sa.Column("id", key, primary_key=True),
        sa.Column("name", key, nullable=True),
        sa.Column("user", key, nullable=True),
        sa.Column("request", LongText, nullable=True),
        sa.Column("result", LongText, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("messages", LongText, nullable=True),
        sa.Column("celery_state", sa.String(32), nullable=True),
        sa.Column("worker", key, nullable=True),
        sa.Column("pid", sa.Integer, nullable=True),
        sa.Column("queue", key, nullable=True),
        sa.Column("retries", sa.Integer, nullable=True),
        sa.Column("parent_id", key, nullable=True),
        sa.Column("root_id", key, nullable=True),
        sa.Column("group_id", key, nullable=True),
        sa.Column("eta", UTCDateTime, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=True),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("runtime", sa.Float, nullable=True),
        sa.Column("seq", sa.Integer, nullable=True),
        mysql_charset="utf8mb4",
        mysql_engine="InnoDB",
        **binary_collation(op.get_bind().dialect),
    )
    for name, columns in (
        ("status_created", ["status", "created_at"]),
        ("name_created", ["name", "created_at"]),
        ("user_created", ["user", "created_at"]),
        ("created", ["created_at"]),
        ("worker_status", ["worker", "status"]),
        ("parent_id", ["parent_id"]),
        ("root_id", ["root_id"]),
        ("group_id", ["group_id"]),
    ):
        op.create_index(f"ix_taskjobs_jobs_{name}", "taskjobs_jobs", columns)


def downgrade() -> None:
    op.drop_table("taskjobs_jobs")

"""Listing indexes that also hold the id, so newest-first pages (created_at, id) need no sort.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (index name, leading column) of each listing index: it orders by (created_at, id) after it.
LISTINGS = (("status", "status"), ("name", "name"), ("user", "user"))


def upgrade() -> None:
    for name, column in LISTINGS:
        op.drop_index(f"ix_taskjobs_jobs_{name}_created", "taskjobs_jobs")
        op.create_index(
            f"ix_taskjobs_jobs_{name}_page", "taskjobs_jobs", [column, "created_at", "id"]
        )
    op.drop_index("ix_taskjobs_jobs_created", "taskjobs_jobs")
    op.create_index("ix_taskjobs_jobs_page", "taskjobs_jobs", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_taskjobs_jobs_page", "taskjobs_jobs")
    op.create_index("ix_taskjobs_jobs_created", "taskjobs_jobs", ["created_at"])
    for name, column in LISTINGS:
        op.drop_index(f"ix_taskjobs_jobs_{name}_page", "taskjobs_jobs")
        op.create_index(f"ix_taskjobs_jobs_{name}_created", "taskjobs_jobs", [column, "created_at"])

"""Page indexes for the lineage ids, the worker and the Celery state, so that a workflow's
children and group, a worker's running jobs and the jobs in one Celery state (lost, revoked,
Flower's ``state=`` filter) are read from an index in (created_at, id) order, without a scan
of every job for the order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# (old index, new index, its leading columns): each new one orders by (created_at, id) after.
REPLACED = (
    ("ix_taskjobs_jobs_parent_id", "ix_taskjobs_jobs_parent_page", ["parent_id"]),
    ("ix_taskjobs_jobs_root_id", "ix_taskjobs_jobs_root_page", ["root_id"]),
    ("ix_taskjobs_jobs_group_id", "ix_taskjobs_jobs_group_page", ["group_id"]),
    ("ix_taskjobs_jobs_worker_status", "ix_taskjobs_jobs_worker_page", ["worker", "status"]),
)


def upgrade() -> None:
    for old, new, columns in REPLACED:
        op.create_index(new, "taskjobs_jobs", [*columns, "created_at", "id"])
        op.drop_index(old, "taskjobs_jobs")
    op.create_index(
        "ix_taskjobs_jobs_celery_state_page", "taskjobs_jobs", ["celery_state", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_taskjobs_jobs_celery_state_page", "taskjobs_jobs")
    for old, new, columns in REPLACED:
        op.create_index(old, "taskjobs_jobs", columns)
        op.drop_index(new, "taskjobs_jobs")

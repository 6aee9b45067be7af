"""The delivery a job's lifecycle follows, so that an id published again starts over.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("taskjobs_jobs", sa.Column("delivery", sa.BigInteger, nullable=True))


def downgrade() -> None:
    op.drop_column("taskjobs_jobs", "delivery")

"""job lease: one row per running job key (workers/guard.py)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:45:00
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_lease",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", core.store.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", core.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("job_lease")

"""rejected record: source records that could not be mapped, kept aside

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 01:10:00
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rejected_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("source_updated_at", core.store.types.UTCDateTime(), nullable=True),
        sa.Column("first_seen_at", core.store.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", core.store.types.UTCDateTime(), nullable=False),
        sa.Column("times", sa.Integer(), nullable=False),
        sa.Column("resolved_at", core.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "key", name="uq_rejected_source_key"),
    )
    op.create_index(
        op.f("ix_rejected_record_resolved_at"), "rejected_record", ["resolved_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_rejected_record_resolved_at"), table_name="rejected_record")
    op.drop_table("rejected_record")

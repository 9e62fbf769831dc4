"""sent reports: each monthly report delivered, with the SHA-256 of its bytes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sent_report",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("recipient", sa.String(length=400), nullable=False),
        sa.Column("via", sa.String(length=20), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("lang", sa.String(length=10), nullable=False),
        sa.Column("as_of", core.store.types.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attachment", sa.String(length=200), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("claimed_at", core.store.types.UTCDateTime(), nullable=False),
        sa.Column("sent_at", core.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("period", "recipient", "via", "format", "lang", name="uq_sent_report"),
    )


def downgrade() -> None:
    op.drop_table("sent_report")

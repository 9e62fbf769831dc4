"""web sessions signed out, seen by every server process

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 15:00:00
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_session_end",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("expires_at", core.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sid"),
    )
    op.create_index(
        op.f("ix_web_session_end_expires_at"), "web_session_end", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_web_session_end_expires_at"), table_name="web_session_end")
    op.drop_table("web_session_end")

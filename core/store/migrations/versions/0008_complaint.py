"""complaints: each complaint from receipt to follow-up call, and its events

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-16 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC = core.store.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "complaint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("nonconformity_id", sa.Integer(), nullable=True),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("policy", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("received_at", UTC(), nullable=False),
        sa.Column("deadline", UTC(), nullable=False),
        sa.Column("ticket_target", sa.String(length=200), nullable=False),
        sa.Column("ticket_ref", sa.String(length=200), nullable=True),
        sa.Column("ticket_url", sa.Text(), nullable=True),
        sa.Column("ticket_status", sa.String(length=100), nullable=True),
        sa.Column("notified_at", UTC(), nullable=True),
        sa.Column("acknowledged_at", UTC(), nullable=True),
        sa.Column("root_cause", sa.Text(), nullable=True),
        sa.Column("root_cause_at", UTC(), nullable=True),
        sa.Column("rectification", sa.Text(), nullable=True),
        sa.Column("rectified_at", UTC(), nullable=True),
        sa.Column("closed_at", UTC(), nullable=True),
        sa.Column("follow_up_channel", sa.String(length=200), nullable=True),
        sa.Column("follow_up_token", sa.String(length=64), nullable=True),
        sa.Column("follow_up_planned_at", UTC(), nullable=True),
        sa.Column("follow_up_reached_at", UTC(), nullable=True),
        sa.Column("follow_up_outcome", sa.JSON(), nullable=False),
        sa.Column("escalated_at", UTC(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("updated_at", UTC(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["nonconformity_id"], ["nonconformity.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("follow_up_token"),
    )
    op.create_index("ix_complaint_incident_id", "complaint", ["incident_id"])
    op.create_index("ix_complaint_state", "complaint", ["state"])
    op.create_table(
        "complaint_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("complaint_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("at", UTC(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["complaint_id"], ["complaint.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("complaint_id", "revision", name="uq_complaint_event_revision"),
    )


def downgrade() -> None:
    op.drop_table("complaint_event")
    op.drop_index("ix_complaint_state", table_name="complaint")
    op.drop_index("ix_complaint_incident_id", table_name="complaint")
    op.drop_table("complaint")

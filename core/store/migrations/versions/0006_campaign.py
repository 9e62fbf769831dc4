"""campaigns: company-level survey campaigns, their members, and contact opt-outs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-15 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "campaign",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=200), nullable=False),
        sa.Column("survey_id", sa.Integer(), nullable=True),
        sa.Column("seed", sa.String(length=200), nullable=False),
        sa.Column("rate", sa.Float(), nullable=False),
        sa.Column("min_per_stratum", sa.Integer(), nullable=False),
        sa.Column("window_from", sa.String(length=10), nullable=False),
        sa.Column("window_to", sa.String(length=10), nullable=False),
        sa.Column("frame_size", sa.Integer(), nullable=False),
        sa.Column("excluded", sa.JSON(), nullable=False),
        sa.Column("picked", sa.Integer(), nullable=False),
        sa.Column("strata", sa.JSON(), nullable=False),
        sa.Column("planned_at", core.store.types.UTCDateTime(), nullable=False),
        sa.Column("launched_at", core.store.types.UTCDateTime(), nullable=True),
        sa.Column("closed_at", core.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "campaign_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("person_key", sa.String(length=400), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("incidents", sa.Integer(), nullable=False),
        sa.Column("stratum", sa.Text(), nullable=False),
        sa.Column("picked", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("correlation_token", sa.String(length=64), nullable=False),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("invited_at", core.store.types.UTCDateTime(), nullable=True),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("reminded_at", core.store.types.UTCDateTime(), nullable=True),
        sa.Column("responded_at", core.store.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", core.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "person_key", name="uq_campaign_member_person"),
        sa.UniqueConstraint("correlation_token"),
    )
    op.create_index(
        op.f("ix_campaign_member_campaign_id"), "campaign_member", ["campaign_id"], unique=False
    )
    op.create_table(
        "contact_opt_out",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_key", sa.String(length=400), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("created_at", core.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contact_key"),
    )


def downgrade() -> None:
    op.drop_table("contact_opt_out")
    op.drop_index(op.f("ix_campaign_member_campaign_id"), table_name="campaign_member")
    op.drop_table("campaign_member")
    op.drop_table("campaign")

"""campaign answers: the complete responses to a campaign's questionnaire, and its items

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 15:00:00
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign") as batch:
        batch.add_column(sa.Column("questionnaire", sa.JSON(), nullable=True))
    op.create_table(
        "campaign_answer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("response_id", sa.String(length=200), nullable=False),
        sa.Column("submitted_at", core.store.types.UTCDateTime(), nullable=True),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("collected_at", core.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["campaign_member.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "response_id", name="uq_campaign_answer_response"),
    )
    op.create_index(
        op.f("ix_campaign_answer_campaign_id"), "campaign_answer", ["campaign_id"], unique=False
    )
    op.create_index(
        op.f("ix_campaign_answer_member_id"), "campaign_answer", ["member_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_campaign_answer_member_id"), table_name="campaign_answer")
    op.drop_index(op.f("ix_campaign_answer_campaign_id"), table_name="campaign_answer")
    op.drop_table("campaign_answer")
    with op.batch_alter_table("campaign") as batch:
        batch.drop_column("questionnaire")

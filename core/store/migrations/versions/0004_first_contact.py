"""first contact and safety: tracking start, collection watermark, tool counts,
survey top-up draws, nonconformity history and revisions, version stamps

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 06:40:00
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connector_state") as t:
        t.add_column(sa.Column("tracking_from", core.store.types.UTCDateTime(), nullable=True))
        t.add_column(sa.Column("collected_until", core.store.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table("sync_run") as t:
        t.add_column(sa.Column("tool_count", sa.Integer(), nullable=True))
        t.add_column(sa.Column("skipped_own", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("sample_run") as t:
        t.add_column(sa.Column("draw", sa.Integer(), nullable=False, server_default="0"))
        t.drop_constraint("uq_sample_policy_month", type_="unique")
        t.create_unique_constraint("uq_sample_policy_month_draw", ["policy", "month", "draw"])
    with op.batch_alter_table("compliance_record") as t:
        t.add_column(sa.Column("as_of", core.store.types.UTCDateTime(), nullable=True))
        t.add_column(sa.Column("qloop_version", sa.String(length=40), nullable=True))
        t.add_column(sa.Column("holidays_version", sa.String(length=40), nullable=True))
    with op.batch_alter_table("nonconformity") as t:
        t.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        t.add_column(sa.Column("withdrawn_at", core.store.types.UTCDateTime(), nullable=True))
    op.create_table(
        "nonconformity_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nonconformity_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("at", core.store.types.UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["nonconformity_id"], ["nonconformity.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("nonconformity_id", "revision", name="uq_nc_event_revision"),
    )


def downgrade() -> None:
    op.drop_table("nonconformity_event")
    with op.batch_alter_table("nonconformity") as t:
        t.drop_column("withdrawn_at")
        t.drop_column("revision")
    with op.batch_alter_table("compliance_record") as t:
        t.drop_column("holidays_version")
        t.drop_column("qloop_version")
        t.drop_column("as_of")
    with op.batch_alter_table("sample_run") as t:
        t.drop_constraint("uq_sample_policy_month_draw", type_="unique")
        t.create_unique_constraint("uq_sample_policy_month", ["policy", "month"])
        t.drop_column("draw")
    with op.batch_alter_table("sync_run") as t:
        t.drop_column("skipped_own")
        t.drop_column("tool_count")
    with op.batch_alter_table("connector_state") as t:
        t.drop_column("collected_until")
        t.drop_column("tracking_from")

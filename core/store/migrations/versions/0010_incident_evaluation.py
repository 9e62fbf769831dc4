"""the evaluate step's bookkeeping in a narrow table beside the incident

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 02:00:00

``incident.evaluated_revision`` and ``incident.evaluate_after`` move to
``incident_evaluation`` (one row per incident the step evaluated): the step
writes them for every incident it evaluates, and on the incident's wide row
each write rewrote the row (its raw payload) and two of its indexes. An
incident never evaluated (``evaluated_revision`` 0, no ``evaluate_after``)
has no row. The downgrade puts the values back on the incident rows.

The incident's columns are dropped with ``ALTER TABLE … DROP COLUMN``
(SQLite ≥ 3.35, which qloop needs for ``RETURNING`` already), not by
Alembic's batch mode: that would copy the incident table into a new one and
drop the old, and with SQLite's foreign keys on, dropping it deletes the
rows that reference an incident (ON DELETE CASCADE).
"""

import sqlalchemy as sa
from alembic import op

import core.store.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_PENDING = sa.text("evaluate_after IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "incident_evaluation",
        sa.Column("incident_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("evaluated_revision", sa.Integer(), nullable=False),
        sa.Column("evaluate_after", core.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    op.create_index(
        "ix_incident_evaluation_evaluate_after",
        "incident_evaluation",
        ["evaluate_after"],
        unique=False,
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )
    op.execute(
        "INSERT INTO incident_evaluation (incident_id, evaluated_revision, evaluate_after)"
        " SELECT id, evaluated_revision, evaluate_after FROM incident"
        " WHERE evaluated_revision <> 0 OR evaluate_after IS NOT NULL"
    )
    op.drop_index("ix_incident_eval", table_name="incident")
    op.drop_index("ix_incident_evaluate_after", table_name="incident")
    op.execute("ALTER TABLE incident DROP COLUMN evaluate_after")
    op.execute("ALTER TABLE incident DROP COLUMN evaluated_revision")


def downgrade() -> None:
    op.add_column(
        "incident",
        sa.Column("evaluated_revision", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("incident", sa.Column("evaluate_after", core.store.types.UTCDateTime()))
    op.execute(
        "UPDATE incident SET"
        " evaluated_revision = (SELECT e.evaluated_revision FROM incident_evaluation e"
        " WHERE e.incident_id = incident.id),"
        " evaluate_after = (SELECT e.evaluate_after FROM incident_evaluation e"
        " WHERE e.incident_id = incident.id)"
        " WHERE id IN (SELECT incident_id FROM incident_evaluation)"
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite keeps the default (a table copy else)
        op.alter_column("incident", "evaluated_revision", server_default=None)
    op.create_index("ix_incident_eval", "incident", ["evaluated_revision", "revision"])
    op.create_index("ix_incident_evaluate_after", "incident", ["evaluate_after"])
    op.drop_index("ix_incident_evaluation_evaluate_after", table_name="incident_evaluation")
    op.drop_table("incident_evaluation")

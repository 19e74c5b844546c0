"""review service: teams, review decisions, the Prefect run producing a brief

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 10:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "team",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True),
                  server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "review_decision",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deliverable_id", sa.Uuid(), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=False),
        sa.Column("reviewer", sa.String(length=100), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("rerender", sa.Boolean(), nullable=False),
        sa.Column("new_seed", sa.BigInteger(), nullable=True),
        sa.Column("artifact_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifact.id"]),
        sa.ForeignKeyConstraint(["deliverable_id"], ["deliverable.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_decision_deliverable_id", "review_decision", ["deliverable_id"])
    with op.batch_alter_table("brief") as batch:  # batch: SQLite cannot ALTER in place
        batch.add_column(sa.Column("flow_run_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("brief") as batch:
        batch.drop_column("flow_run_id")
    op.drop_index("ix_review_decision_deliverable_id", table_name="review_decision")
    op.drop_table("review_decision")
    op.drop_table("team")

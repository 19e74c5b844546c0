"""page sessions (hashed ids) and the failed-run count that parks a brief

Revision ID: 0004_sessions
Revises: 0003_team_isolation
Create Date: 2026-11-25 16:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_sessions"
down_revision = "0003_team_isolation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "brief_run",
        sa.Column("brief_id", sa.Uuid(), nullable=False),
        sa.Column("failed_runs", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True),
                  server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["brief_id"], ["brief.id"]),
        sa.PrimaryKeyConstraint("brief_id"),
    )
    op.create_table(
        "web_session",
        sa.Column("id_sha256", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True),
                  server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"]),
        sa.PrimaryKeyConstraint("id_sha256"),
    )
    op.create_index("ix_web_session_team_id", "web_session", ["team_id"])


def downgrade() -> None:
    op.drop_index("ix_web_session_team_id", table_name="web_session")
    op.drop_table("web_session")
    op.drop_table("brief_run")

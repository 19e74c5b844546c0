"""registered LoRAs (issue 11): name, files in storage and their digest, per team

Revision ID: 0006_lora
Revises: 0004_sessions
Create Date: 2026-11-25 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_lora"
down_revision = "0005_spots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lora",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("files_prefix", sa.String(length=1024), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True),
                  server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("team", "name"),
    )


def downgrade() -> None:
    op.drop_table("lora")

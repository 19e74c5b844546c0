"""spots: a deliverable row is a scene finish (an intermediate) or a finished spot

Revision ID: 0005_spots
Revises: 0004_sessions
Create Date: 2026-11-25 18:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_spots"
down_revision = "0004_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every row before this revision is a scene finish; batch mode: SQLite rebuilds the table.
    with op.batch_alter_table("deliverable") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=10), nullable=False,
                                   server_default="scene"))
        batch.create_index("ix_deliverable_kind", ["kind"])


def downgrade() -> None:
    with op.batch_alter_table("deliverable") as batch:
        batch.drop_index("ix_deliverable_kind")
        batch.drop_column("kind")

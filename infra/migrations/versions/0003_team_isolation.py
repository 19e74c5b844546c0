"""team isolation and budgets: campaigns per team, submissions, idempotency, cost estimate

Revision ID: 0003_team_isolation
Revises: 0002
Create Date: 2026-11-25 16:40:00

Campaign slugs were global, so a second team reusing a slug was attached to the first team's
campaign. Here every campaign gets the team of its briefs; a campaign that briefs of several
teams share is split into one campaign per team (the earliest submitting team keeps the row).
Campaigns submitted without a team (the CLI) belong to `_local`.

Stored objects are not moved by this migration (Alembic has no storage): run
`mova-ads storage move-team-keys` once after it. That step copies every published and in-review
file to its team-scoped key (`campaigns/<team>/<campaign>/...`) and points the rows at the new
URIs; it is idempotent (copies are verified, done rows are skipped), and the old keys are left
in place until the operator removes them.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003_team_isolation"
down_revision = "0002"
branch_labels = None
depends_on = None

NO_TEAM = "_local"  # as infra.db_models.NO_TEAM (a migration never imports the live models)


def _campaign_columns() -> list[sa.Column[object]]:
    """campaign's columns as 0001 made them."""
    return [sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("slug", sa.String(length=63), nullable=False),
            sa.Column("brand", sa.String(length=200), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True),
                      server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False)]


def _split_campaigns() -> None:
    """Give each campaign the team of its briefs; one campaign row per (team, slug)."""
    bind = op.get_bind()
    campaign = sa.table("campaign", sa.column("id", sa.Uuid()), sa.column("slug", sa.String),
                        sa.column("brand", sa.String), sa.column("team", sa.String))
    brief = sa.table("brief", sa.column("campaign_id", sa.Uuid()), sa.column("team", sa.String),
                     sa.column("created_at", sa.DateTime(timezone=True)))
    team_of = sa.func.coalesce(brief.c.team, NO_TEAM)
    for campaign_id, slug, brand in bind.execute(
            sa.select(campaign.c.id, campaign.c.slug, campaign.c.brand)).all():
        teams = [row[0] for row in bind.execute(
            sa.select(team_of).where(brief.c.campaign_id == campaign_id).group_by(team_of)
            .order_by(sa.func.min(brief.c.created_at), team_of)).all()] or [NO_TEAM]
        bind.execute(sa.update(campaign).where(campaign.c.id == campaign_id)
                     .values(team=teams[0]))
        for team in teams[1:]:
            new_id = uuid.uuid4()
            bind.execute(sa.insert(campaign).values(id=new_id, slug=slug, brand=brand,
                                                    team=team))
            bind.execute(sa.update(brief).where(brief.c.campaign_id == campaign_id,
                                                team_of == team).values(campaign_id=new_id))


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    # 1. drop the global UNIQUE(slug), add the team column (still empty)
    if dialect == "sqlite":
        # SQLite recreates the table; copy_from describes it without the old unnamed
        # UNIQUE(slug), so the copy drops it.
        old = sa.Table("campaign", sa.MetaData(), *_campaign_columns(),
                       sa.PrimaryKeyConstraint("id"))
        with op.batch_alter_table("campaign", copy_from=old, recreate="always") as batch:
            batch.add_column(sa.Column("team", sa.String(length=100), nullable=True))
    else:
        op.drop_constraint("campaign_slug_key", "campaign", type_="unique")
        op.add_column("campaign", sa.Column("team", sa.String(length=100), nullable=True))
    # 2. one campaign per (team, slug)
    _split_campaigns()
    # 3. the new rule
    with op.batch_alter_table("campaign") as batch:
        batch.alter_column("team", existing_type=sa.String(length=100), nullable=False)
        batch.create_unique_constraint("uq_campaign_team_slug", ["team", "slug"])

    with op.batch_alter_table("brief") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("gpu_seconds_estimate", sa.Double(), nullable=True))
        batch.create_unique_constraint("uq_brief_team_idempotency_key",
                                       ["team", "idempotency_key"])
    with op.batch_alter_table("team") as batch:
        batch.add_column(sa.Column("last_submission_at", sa.DateTime(timezone=True),
                                   nullable=True))
    op.create_table(
        "submission",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=False),
        sa.Column("brief_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["brief_id"], ["brief.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_submission_team", "submission", ["team"])
    op.create_index("ix_submission_created_at", "submission", ["created_at"])


def downgrade() -> None:
    """Back to global slugs: only possible while no slug is used by two teams."""
    op.drop_index("ix_submission_created_at", table_name="submission")
    op.drop_index("ix_submission_team", table_name="submission")
    op.drop_table("submission")
    with op.batch_alter_table("team") as batch:
        batch.drop_column("last_submission_at")
    with op.batch_alter_table("brief") as batch:
        batch.drop_constraint("uq_brief_team_idempotency_key", type_="unique")
        batch.drop_column("gpu_seconds_estimate")
        batch.drop_column("idempotency_key")
    with op.batch_alter_table("campaign") as batch:
        batch.drop_constraint("uq_campaign_team_slug", type_="unique")
        batch.drop_column("team")
        batch.create_unique_constraint("campaign_slug_key", ["slug"])

"""Migration 0003 on a database at 0002 holding the old global-slug data (SQLite and
PostgreSQL): a campaign two teams shared becomes one campaign per team, every brief keeps its
team's campaign, and the new constraints hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from infra.db import _alembic_config, downgrade_to_base, upgrade_to_head

CAMPAIGN = sa.table("campaign", sa.column("id", sa.Uuid()), sa.column("slug", sa.String),
                    sa.column("brand", sa.String),
                    sa.column("created_at", sa.DateTime(timezone=True)))
BRIEF = sa.table("brief", sa.column("id", sa.Uuid()), sa.column("campaign_id", sa.Uuid()),
                 sa.column("team", sa.String), sa.column("raw", sa.Text),
                 sa.column("sha256", sa.String), sa.column("status", sa.String),
                 sa.column("created_at", sa.DateTime(timezone=True)),
                 sa.column("updated_at", sa.DateTime(timezone=True)))


def _at_0002_with_data(engine: Engine) -> dict[str, object]:
    downgrade_to_base(engine)
    command.upgrade(_alembic_config(engine), "0002")
    shared, alone = uuid4(), uuid4()
    briefs = {"emea": uuid4(), "apac": uuid4(), "cli": uuid4(), "emea2": uuid4()}
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(sa.insert(CAMPAIGN), [
            {"id": shared, "slug": "spring", "brand": "Aurora", "created_at": t0},
            {"id": alone, "slug": "autumn", "brand": "Borealis", "created_at": t0}])
        for i, (name, campaign, team) in enumerate([
                ("emea", shared, "emea"), ("apac", shared, "apac"), ("cli", shared, None),
                ("emea2", alone, "emea")]):
            at = t0 + timedelta(minutes=i)
            connection.execute(sa.insert(BRIEF).values(
                id=briefs[name], campaign_id=campaign, team=team, raw="{}", sha256=f"{i:064d}",
                status="submitted", created_at=at, updated_at=at))
    return {"shared": shared, "alone": alone, "briefs": briefs}


def test_migration_splits_a_shared_campaign_per_team(engine: Engine) -> None:
    data = _at_0002_with_data(engine)
    upgrade_to_head(engine)
    with engine.connect() as connection:
        campaign = sa.table("campaign", sa.column("id", sa.Uuid()), sa.column("team"),
                            sa.column("slug"))
        campaigns = {(r.team, r.slug): r.id for r in connection.execute(sa.select(campaign))}
        brief_campaign = {r.id: r.campaign_id for r in connection.execute(
            sa.select(BRIEF.c.id, BRIEF.c.campaign_id))}
    assert set(campaigns) == {("emea", "spring"), ("apac", "spring"), ("_local", "spring"),
                              ("emea", "autumn")}
    briefs = data["briefs"]
    assert isinstance(briefs, dict)
    # the team that submitted first keeps the old row; the others get rows of their own
    assert campaigns[("emea", "spring")] == data["shared"]
    assert brief_campaign[briefs["emea"]] == campaigns[("emea", "spring")]
    assert brief_campaign[briefs["apac"]] == campaigns[("apac", "spring")]
    assert brief_campaign[briefs["cli"]] == campaigns[("_local", "spring")]
    assert brief_campaign[briefs["emea2"]] == data["alone"]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO campaign (id, team, slug, brand, created_at) VALUES "
            "(:id, 'apac', 'spring', 'X', CURRENT_TIMESTAMP)"), {"id": str(uuid4())})


def test_migration_downgrades_to_0002_when_slugs_are_unique(engine: Engine) -> None:
    _at_0002_with_data(engine)
    with engine.begin() as connection:  # keep one team per slug so the old constraint holds
        connection.execute(sa.text("DELETE FROM brief WHERE team IS NULL OR team = 'apac'"))
    upgrade_to_head(engine)
    command.downgrade(_alembic_config(engine), "0002")
    upgrade_to_head(engine)

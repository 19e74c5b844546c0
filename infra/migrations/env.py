"""Alembic environment: the engine is passed in by infra.db (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from infra.db_models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

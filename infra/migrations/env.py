"""Alembic environment: the engine is passed in by infra.db (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from infra.db_models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration recreates a table (copy, DROP, rename); with foreign keys on, SQLite
        # refuses to DROP a table other rows point at. Off for the migration (a PRAGMA outside
        # any transaction, as SQLite requires), checked and back on after.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        if broken:
            raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")

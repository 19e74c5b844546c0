"""Alembic environment: the engine is passed in by infra.db (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from infra.db_models import Base

engine = context.config.attributes["engine"]


def _outside_transaction(connection: Connection, pragma: str) -> None:
    """A PRAGMA on the driver's connection while no transaction is open: through SQLAlchemy
    it would first open one (infra.db begins every transaction IMMEDIATE), where SQLite
    ignores `foreign_keys`."""
    connection.connection.driver_connection.execute(pragma)  # type: ignore[union-attr]


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration recreates a table (copy, DROP, rename); with foreign keys on, SQLite
        # refuses to DROP a table other rows point at. Off for the migration (a PRAGMA outside
        # any transaction, as SQLite requires), checked and back on after.
        _outside_transaction(connection, "PRAGMA foreign_keys=OFF")
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        connection.commit()
        _outside_transaction(connection, "PRAGMA foreign_keys=ON")
        if broken:
            raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")

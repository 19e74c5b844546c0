"""Database engine, sessions and migrations. The caller owns the transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from infra.settings import SettingsInvalid
from schemas.errors import TransientError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets foreign keys, WAL and a parent folder."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        folder = Path(url.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # /proc/x, a read-only disk: one line, not a traceback
            raise SettingsInvalid(f"invalid configuration: DATABASE_URL: the SQLite file's "
                                  f"folder {folder} cannot be made ({err.strerror})") from None
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: Any, _record: Any) -> None:
            # BEGIN is emitted below, not by the driver (it would defer it).
            connection.isolation_level = None
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Any) -> None:
            # A deferred transaction that read before another thread's commit cannot write
            # any more (SQLITE_BUSY, which busy_timeout does not wait out): with scenes finished
            # in parallel threads, every transaction takes the write lock when it starts.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


def is_transient(error: BaseException) -> bool:
    """True for errors a retry can cure: our TransientError (storage throttling, a restarting
    worker, ...), a database that is unreachable, restarting or locked (OperationalError), and
    a connection the pool found dead. Integrity, programming and data errors are not."""
    if isinstance(error, TransientError | OperationalError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Apply every migration not yet applied (the app does this itself at start)."""
    command.upgrade(_alembic_config(engine), "head")
    log.info("db.migrated url=%s", engine.url.render_as_string(hide_password=True))


def downgrade_to_base(engine: Engine) -> None:
    command.downgrade(_alembic_config(engine), "base")

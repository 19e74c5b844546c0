"""A lock per brief held for a whole production run, released when the run's process dies.

Two ingest workers on one database both see a planned brief; only the one holding its lock
produces it, the other skips it. The lock lives as long as the holder: on PostgreSQL a
session-level advisory lock on a dedicated connection (the server drops it when the
connection closes, so a killed worker frees it), on SQLite (one machine) an flock on a file
beside the database (the kernel drops it when the process exits).
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from sqlalchemy import Connection, Engine, text

log = logging.getLogger(__name__)


def _advisory_key(brief_id: UUID) -> int:
    return int.from_bytes(brief_id.bytes[:8], "big", signed=True)  # a bigint


@contextmanager
def brief_lock(engine: Engine, brief_id: UUID) -> Iterator[bool]:
    """Try to take the brief's production lock without waiting; yields whether it is held."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, _advisory_key(brief_id)) as held:
            yield held
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield True  # one process owns an in-memory database
        return
    with _file_lock(Path(f"{database}.brief-{brief_id}.lock")) as held:
        yield held


@contextmanager
def _advisory_lock(engine: Engine, key: int) -> Iterator[bool]:
    connection = engine.connect()
    try:
        held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                       {"key": key}).scalar())
        connection.commit()  # session-level: the lock outlives this transaction
        try:
            yield held
        finally:
            if held:
                _advisory_unlock(connection, key)
    finally:
        connection.close()


def _advisory_unlock(connection: Connection, key: int) -> None:
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.commit()
    except Exception:  # noqa: BLE001 - a dropped connection has released the lock already
        log.warning("lock.release_failed key=%d (connection lost: the lock went with it)", key)
        connection.invalidate()


@contextmanager
def _file_lock(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

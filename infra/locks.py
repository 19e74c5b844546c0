"""A lock per brief held for a whole production run, released when the run's process dies.

Two ingest workers on one database both see a planned brief; only the one holding its lock
produces it, the other skips it. The lock lives as long as the holder: on PostgreSQL a
session-level advisory lock on a dedicated connection (the server drops it when the
connection closes, so a killed worker frees it), on SQLite (one machine) an flock on a file
beside the database (the kernel drops it when the process exits).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


def _advisory_key(brief_id: UUID) -> int:
    return int.from_bytes(brief_id.bytes[:8], "big", signed=True)  # a bigint


class BriefLock:
    """A held (truthy) or refused (falsy) production lock. `still_held()` before each step
    of a long run: the lock lives on one PostgreSQL connection, and a connection the server
    dropped (a restart, `pg_terminate_backend`) took the lock with it, silently."""

    def __init__(self, held: bool, retake: Callable[[], bool] | None = None) -> None:
        self.held = held
        self._retake = retake

    def __bool__(self) -> bool:
        return self.held

    def still_held(self) -> bool:
        """True while this run may go on: the lock is still ours, or was lost and taken
        again. False when another worker took it meanwhile: this run must stop."""
        if self.held and self._retake is not None:
            self.held = self._retake()
        return self.held


@contextmanager
def brief_lock(engine: Engine, brief_id: UUID) -> Iterator[BriefLock]:
    """Try to take the brief's production lock without waiting."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, _advisory_key(brief_id)) as lock:
            yield lock
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield BriefLock(True)  # one process owns an in-memory database
        return
    with _file_lock(Path(f"{database}.brief-{brief_id}.lock")) as held:
        yield BriefLock(held)  # the kernel keeps an flock as long as the process lives


def _try_lock(connection: Connection, key: int) -> bool:
    held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                   {"key": key}).scalar())
    connection.commit()  # session-level: the lock outlives this transaction
    return held


@contextmanager
def _advisory_lock(engine: Engine, key: int) -> Iterator[BriefLock]:
    connections = [engine.connect()]  # the last one holds the lock

    def retake() -> bool:
        try:
            connections[-1].execute(text("SELECT 1"))
            connections[-1].commit()
            return True  # the session lives, so does its lock
        except DBAPIError:
            connections[-1].invalidate()
        log.warning("lock.lost key=%d (its connection was dropped); taking it again", key)
        connections.append(engine.connect())
        taken = _try_lock(connections[-1], key)
        if not taken:
            log.warning("lock.taken_by_another key=%d: this run stops", key)
        return taken

    try:
        lock = BriefLock(_try_lock(connections[0], key), retake)
        try:
            yield lock
        finally:
            if lock.held:
                _advisory_unlock(connections[-1], key)
    finally:
        for connection in connections:
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
    """flock on `path`, removed by its holder as it lets go (one file per brief otherwise
    piled up beside the database). A contender that locked the file just removed checks that
    its file is still the one at `path`, else takes the lock on the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            yield False
            return
        try:
            current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()  # its holder removed it as it let go: lock the file now at `path`
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # before letting go: no one can lock a removed file and keep it
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

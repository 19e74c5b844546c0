"""A new home for Prefect's ephemeral server starts from an empty, migrated database.

The ephemeral server keeps its state in a SQLite file under PREFECT_HOME. In a home without one,
the server's start creates it: every Prefect migration, about 10 s of a first run's start on a
2-core machine, paid before the first flow can begin. `make install` creates one empty database
per virtualenv (`python -m app.prefect_home`); a run whose home has no database yet starts from
a copy. The server still checks the migrations at its start, so a copy made by an older Prefect
is brought up to date like any old database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Inside the virtualenv: made by the Prefect that reads it, gone with the environment.
EMPTY_DATABASE = Path(sys.prefix) / "share" / "mova-ads" / "prefect-empty.db"
SQLITE_PREFIX = "sqlite+aiosqlite:///"


def _database_path() -> Path | None:
    """The SQLite file the ephemeral server will use, or None when it uses no local file (a
    PREFECT_API_URL names a server; a database URL names PostgreSQL)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return None
    url = settings.server.database.connection_url
    text = url.get_secret_value() if url is not None else ""
    return Path(text.removeprefix(SQLITE_PREFIX)) if text.startswith(SQLITE_PREFIX) else None


def seed_home(empty: Path = EMPTY_DATABASE) -> Path | None:
    """Copy the empty database into a home that has none yet; the path written, else None (a
    database there already, no local database, or no empty one made at install)."""
    target = _database_path()
    if target is None or target.exists() or not empty.is_file():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.copyfile(empty, partial)
    try:
        os.link(partial, target)  # never over a database another run made meanwhile
    except FileExistsError:
        return None
    finally:
        partial.unlink()
    return target


def build_empty_database(path: Path = EMPTY_DATABASE) -> Path:
    """Create the empty, migrated database at `path` (in a child process: Prefect reads its
    home once, when first imported)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prefect-home-") as home:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("PREFECT_")}
        subprocess.run([sys.executable, "-m", "app.prefect_home", "--migrate-here"],
                       env={**env, "PREFECT_HOME": home}, check=True)
        made = Path(home) / "prefect.db"
        if Path(f"{made}-wal").exists():  # not all of it in the one file: do not copy half
            raise RuntimeError(f"{made}: a write-ahead log was left beside the database")
        partial = path.with_name(f".{path.name}.partial")
        shutil.copyfile(made, partial)
        partial.replace(path)
    return path


def _migrate() -> None:
    from prefect.server.database import provide_database_interface

    asyncio.run(provide_database_interface().create_db())


if __name__ == "__main__":
    if sys.argv[1:] == ["--migrate-here"]:
        _migrate()
    else:
        sys.stdout.write(f"empty Prefect database: {build_empty_database()}\n")

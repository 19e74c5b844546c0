"""The adapters one run needs, built once from settings and passed to every task."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path

from sqlalchemy import Engine

from infra.db import make_engine, upgrade_to_head
from infra.lineage_events import LineageEmitter
from infra.settings import Settings
from infra.storage import ObjectStore, open_store


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    version = metadata.version("mova-ads")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+{commit}"


@dataclass
class Services:
    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        engine = make_engine(self.settings.database)
        upgrade_to_head(engine)
        return engine

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings.storage, endpoint_url=self.settings.s3_endpoint_url,
                          region=self.settings.aws_region,
                          create_bucket=self.settings.storage_create_bucket, require_bucket=True)

    @cached_property
    def lineage(self) -> LineageEmitter:
        return LineageEmitter(file_dir=self.settings.lineage_dir,
                              http_url=self.settings.openlineage_url,
                              api_key=self.settings.openlineage_api_key)

    @cached_property
    def code_version(self) -> str:
        return code_version()

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # also on error: the pooled connections are returned either way

"""The per-brief production lock on SQLite: one holder at a time, and no file left behind."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from infra.db import make_engine
from infra.locks import brief_lock


def test_a_brief_lock_has_one_holder_and_leaves_no_file(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'mova_ads.db'}")
    brief_id = uuid4()
    lock_file = tmp_path / f"mova_ads.db.brief-{brief_id}.lock"
    for _ in range(2):  # taken again after being let go
        with brief_lock(engine, brief_id) as held:
            assert held and lock_file.exists()
            with brief_lock(engine, brief_id) as second:  # another run's try (its own open)
                assert not second
            with brief_lock(engine, uuid4()) as other_brief:
                assert other_brief
        # one file per brief piled up beside the database
        assert not list(tmp_path.glob("*.lock"))
    engine.dispose()

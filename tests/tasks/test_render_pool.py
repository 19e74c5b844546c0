"""A run of many briefs keeps its render pool (and the model its actors loaded) from one brief to
the next; a brief on its own opens and closes its own; a brief that fails leaves no pool behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from infra.gpu_pool import GpuPool
from infra.settings import Settings, load_settings
from tasks.render import keep_pools_open, render_pool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    from mova_model.make_checkpoint import make_checkpoint

    checkpoint = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield load_settings({"MOVA_DATA_DIR": str(tmp_path_factory.mktemp("data")),
                             "MOVA_CHECKPOINT": str(checkpoint)})
    finally:
        ray.shutdown()


def actor_process(model: Any, payload: int) -> int:
    """Which process holds the loaded model (a new actor is a new process and a new load)."""
    assert model.pipeline is not None
    return os.getpid()


def holder(pool: GpuPool) -> int:
    (outcome,) = pool.map_unordered(actor_process, [0], key=str)
    assert outcome.ok, outcome.error
    return int(outcome.value)


def running(pid: int, settle_s: float = 15.0) -> bool:
    """Whether the actor process still runs; a killed one is given time to exit."""
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.2)
    return True


def test_a_run_keeps_one_pool_for_its_briefs_a_lone_brief_closes_its_own(
        settings: Settings) -> None:
    # a brief outside a run: its pool (and the actor's process) ends with it
    with render_pool(settings) as lone:
        lone_holder = holder(lone)
    assert not running(lone_holder), "a lone brief left its pool's actor running"

    with keep_pools_open():
        # a brief that fails takes its pool down: the next one starts on a new actor
        with pytest.raises(RuntimeError, match="brief failed"):
            with render_pool(settings) as failed:
                failed_holder = holder(failed)
                raise RuntimeError("brief failed")
        assert not running(failed_holder)
        with render_pool(settings) as first:
            assert first is not failed and first is not lone
            loaded_by = holder(first)
        assert loaded_by not in (lone_holder, failed_holder)
        # the next briefs of the run render on the same actor: the model is not loaded again
        with render_pool(settings) as second:
            assert second is first
            assert holder(second) == loaded_by, "the second brief loaded the model again"
        with keep_pools_open():  # a nested keeper shares the outer one's pools
            with render_pool(settings) as third:
                assert third is first
        assert running(loaded_by, settle_s=1.0), "a brief's end closed the run's pool"
    assert not running(loaded_by), "the run ended and left its pool's actor running"


def _all_cpus_free(total: float = 2.0, settle_s: float = 15.0) -> bool:
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0.0) >= total:
            return True
        time.sleep(0.2)
    return False


def test_a_pool_warmed_when_the_run_starts_is_the_one_its_briefs_render_on(
        settings: Settings) -> None:
    # `mova-ads run` opens the pool in the background while Prefect's server starts
    with keep_pools_open(warm=settings):
        with render_pool(settings) as first:
            loaded_by = holder(first)
        with render_pool(settings) as second:
            assert second is first
    assert not running(loaded_by), "the run ended and left its warmed pool's actor running"
    # a run with nothing to render still closes the pool it warmed (once it has opened)
    with keep_pools_open(warm=settings):
        pass
    assert _all_cpus_free(), "an unused warmed pool kept its actor"


def actor_secrets(model: Any, payload: int) -> tuple[str, str | None, str]:
    """What the actor loaded: its database URL, lineage key and storage."""
    return (model.settings.database_url, model.settings.openlineage_api_key,
            model.settings.storage_url)


def test_the_actor_is_not_given_the_database_password_or_the_lineage_key(
        settings: Settings) -> None:
    # Ray keeps an actor's arguments in its control store; the actor renders and stores clips,
    # the flow records them: the database URL (with its password) and the lineage API key were
    # sent to every render actor all the same.
    secret = settings.model_copy(update={
        "database_url": "postgresql+psycopg://ads:s3cret-pw@db.internal:5432/ads",
        "openlineage_api_key": "lineage-key-123"})
    with render_pool(secret) as pool:
        (outcome,) = pool.map_unordered(actor_secrets, [0], key=str)
    assert outcome.ok, outcome.error
    database_url, api_key, storage_url = outcome.value
    assert "s3cret-pw" not in database_url and "db.internal" not in database_url
    assert api_key is None
    assert storage_url == settings.storage_url  # what it needs is still there

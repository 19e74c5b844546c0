"""The example brief produced on a multi-node Ray cluster, losing a worker host mid-campaign.

Hosts are network namespaces on this machine (tests/cluster.py): a head with no CPUs and two
one-CPU workers. `mova-ads submit` and `mova-ads run` run on the head with RAY_ADDRESS at its GCS,
as an operator would; database (SQLite) and storage (a folder) are files every host sees, as a
shared PostgreSQL and S3 would be. Once both workers have finished a render, one worker host
loses power with its next render in flight. The campaign must still finish: every deliverable
published once, every render recorded once, no stray stored file."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from infra.db import make_engine, session_scope
from infra.db_models import Artifact, Deliverable, DeliverableKind, RenderJob
from infra.settings import load_settings
from infra.statuses import DeliverableStatus, RenderStatus
from infra.storage import open_store
from tasks.deliver import FILE_SUFFIXES
from tests.cluster import NetnsCluster, netns_hosts

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from app.cli import main; main()"]
EXAMPLE = ROOT / "examples" / "brief.yaml"
DELIVERABLES = 4  # 1 scene x 2 locales x 2 aspects, each its own render (lipsync)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[NetnsCluster]:
    with netns_hosts("movae", 32) as hosts:
        yield hosts


def _clip_nodes(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with session_scope(engine) as session:
            return [str(a.params.get("node")) for a in
                    session.scalars(select(Artifact).where(Artifact.kind == "clip"))]
    finally:
        engine.dispose()


@pytest.mark.timeout(900)
def test_the_example_brief_is_produced_on_the_cluster_through_a_host_loss(
        cluster: NetnsCluster, tmp_path: Path) -> None:
    from mova_model.make_checkpoint import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "ckpt" / "tiny", preset="tiny", seed=0)
    data = tmp_path / "data"
    env = {"MOVA_DATA_DIR": str(data), "MOVA_CHECKPOINT": str(checkpoint),
           "RAY_ADDRESS": cluster.gcs_address, "RENDER_WORKERS": "2",
           "PYTHONPATH": str(ROOT),
           # Prefect's ephemeral server starts slowly on a busy 2-core machine
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    settings = load_settings(env)
    submitted = cluster.run(cluster.head, [*CLI, "submit", str(EXAMPLE)], env=env, timeout_s=300)
    assert submitted.returncode == 0, submitted.stderr
    started = time.monotonic()
    driver = cluster.start(cluster.head, [*CLI, "run"], env=env, log_name="campaign")
    victim, survivor = cluster.hosts[1], cluster.hosts[2]
    deadline = started + 420
    nodes: list[str] = []
    while time.monotonic() < deadline:  # until both workers have finished a render
        nodes = _clip_nodes(settings.database)
        if len(set(nodes)) >= 2 or len(nodes) >= DELIVERABLES:
            break
        assert driver.poll() is None, cluster.logs(cluster.head, tail=80)
        time.sleep(0.5)
    assert set(nodes) == {victim.address, survivor.address}, f"renders ran on {set(nodes)}"
    assert len(nodes) < DELIVERABLES, "the campaign ended before a host could be lost"
    cluster.kill_host(victim)  # its next render is in flight: the host loses power
    killed_at = time.monotonic() - started
    assert driver.wait(timeout=max(30.0, deadline + 300 - time.monotonic())) == 0, \
        cluster.logs(cluster.head, tail=80)
    wall_s = time.monotonic() - started

    engine = make_engine(settings.database)
    with session_scope(engine) as session:
        deliverables = list(session.scalars(select(Deliverable)))
        jobs = list(session.scalars(select(RenderJob)))
        clips = list(session.scalars(select(Artifact).where(Artifact.kind == "clip")))
        videos = list(session.scalars(select(Artifact).where(Artifact.kind == "video")))
        rows = [(d.name, d.status, d.published_uri) for d in deliverables
                if d.kind == DeliverableKind.SPOT]
        scenes = [d.status for d in deliverables if d.kind == DeliverableKind.SCENE]
        attempts = sorted(j.attempts for j in jobs)
        job_states = {j.status for j in jobs}
        clip_specs = [c.input_key for c in clips]
        clip_keys = {str(c.params["key"]) for c in clips}
        per_node = Counter(str(c.params["node"]) for c in clips)
        node_of = {c.input_key: str(c.params["node"]) for c in clips}
        retried = [j.spec_key for j in jobs if j.attempts >= 2]
    engine.dispose()
    # every spot exactly once, published, each from its one scene finished once; every
    # render once, done
    assert len(rows) == DELIVERABLES and len({name for name, _, _ in rows}) == DELIVERABLES
    assert {status for _, status, _ in rows} == {DeliverableStatus.PUBLISHED}, rows
    assert scenes == [DeliverableStatus.FINISHED] * DELIVERABLES
    assert len(jobs) == DELIVERABLES and job_states == {RenderStatus.DONE}
    assert len(clip_specs) == len(set(clip_specs)) == DELIVERABLES, "a render was recorded twice"
    assert len(videos) == 2 * DELIVERABLES  # the scene finishes and the spots
    assert attempts[-1] >= 2, "no render was in flight on the lost host"
    # both hosts rendered, and what was in flight on the lost one was rendered again on the
    # survivor (how many each did before the loss depends on the machine's load)
    assert per_node[victim.address] >= 1 and per_node[survivor.address] >= 1, per_node
    assert {node_of[key] for key in retried} == {survivor.address}, (retried, node_of)
    # storage: exactly the published files and the recorded clips, nothing stray
    store = open_store(settings.storage)
    files: dict[str, set[str]] = {}
    for key in store.list("campaigns/"):
        suffix = max((s for s in FILE_SUFFIXES.values() if key.endswith(s)), key=len)
        files.setdefault(key.removesuffix(suffix), set()).add(suffix)
    assert len(files) == DELIVERABLES, sorted(files)
    assert all({".mp4", ".srt", ".vtt", ".manifest.json"} <= kinds for kinds in files.values())
    assert {uri for _, _, uri in rows} == {store.uri_for(stem + ".mp4") for stem in files}
    assert set(store.list("renders/")) == clip_keys
    print(f"\ncluster campaign: wall {wall_s:.0f} s, host lost at {killed_at:.0f} s, "  # noqa: T201 - the figures the issue asks for
          f"renders per node {dict(per_node)}, render attempts {attempts}")

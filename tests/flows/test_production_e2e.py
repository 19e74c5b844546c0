"""A tiny-model brief through the real flows: one finished spot per language x aspect (playable
MP4s, manifests listing scenes, renders and seeds), lineage, idempotence, and recovery from a
run killed mid-way. Slow (tens of seconds each); run in CI too."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import pytest
from sqlalchemy import func, select

from infra.db import make_engine, session_scope
from infra.db_models import Artifact, BriefRow, Deliverable, RenderJob
from infra.leftover_processes import running_processes
from infra.repository import lineage_chain

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "brief.yaml"
CLI = [sys.executable, "-c", "from app.cli import main; main()"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def cli_env(data_dir: Path, checkpoint: Path, prefect_api: str | None = None,
            **extra: str) -> dict[str, str]:
    """The CLI's environment: the data dir and checkpoint, on the shared Prefect server
    `prefect_api` (the `prefect_api` fixture) or, without it, on Prefect's ephemeral one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MOVA_"))}
    if prefect_api is not None:
        env["PREFECT_API_URL"] = prefect_api
    env.update({"MOVA_DATA_DIR": str(data_dir), "MOVA_CHECKPOINT": str(checkpoint),
                "PYTHONPATH": str(ROOT),
                # a loaded 2-core machine can take longer than Prefect's default 20 s to bring
                # up its ephemeral server
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300", **extra})
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 900
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _check_deliverables(database_url: str, expected: int) -> list[Deliverable]:
    """The published rows: `expected` spots and nothing else (scene finishes are
    intermediates); each spot's lineage runs through its scene finish and render."""
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        rows = list(session.scalars(select(Deliverable)))
        published = [r for r in rows if r.status == "published"]
        assert len(published) == expected, [(r.name, r.status, r.error) for r in rows]
        assert all(r.kind == "spot" for r in published)
        for row in published:
            chain = [a.kind for _, a in lineage_chain(session, row.video_artifact_id)]
            assert chain[:2] == ["video", "video"] and chain[-1] == "brief" and "clip" in chain
    engine.dispose()
    return published


def _check_mp4(path: Path) -> None:
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height) in ((1280, 720), (720, 1280))
        assert audio.sample_rate == 48_000 and audio.channels == 2
        # the brief's 1.0 s scene (its 25-frame render trimmed to the brief), then its 1.0 s
        # end card: the brand kit's background (#101820) in the corners of the last frame
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 48
        corners = [frames[-1][:8, :8], frames[-1][-8:, -8:]]
        for corner in corners:
            assert abs(corner.reshape(-1, 3).mean(axis=0) - (16, 24, 32)).max() < 12


def _s3_objects(client: Any, bucket: str) -> dict[str, tuple[str, Any]]:
    listing = client.list_objects_v2(Bucket=bucket)
    return {o["Key"]: (o["ETag"], o["LastModified"]) for o in listing.get("Contents", [])}


@pytest.mark.postgres
def test_example_brief_on_postgres_and_s3_end_to_end_then_a_rerun_adds_nothing(
        tmp_path: Path, checkpoint: Path, fresh_postgres_url: str, s3_endpoint: str,
        prefect_api: str) -> None:
    """The production configuration: PostgreSQL, S3 (moto's server) and a Prefect server.
    (The embedded defaults, SQLite, a local folder and Prefect's ephemeral server, run in
    the killed-mid-way test below.)"""
    database = fresh_postgres_url
    bucket = f"deliveries-{uuid.uuid4().hex[:8]}"
    env = cli_env(tmp_path, checkpoint, prefect_api=prefect_api, DATABASE_URL=database,
                  STORAGE_URL=f"s3://{bucket}/ads", S3_ENDPOINT_URL=s3_endpoint,
                  AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                  AWS_DEFAULT_REGION="us-east-1")
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    # the bucket does not exist yet: refused by name, not created (a misspelt one would be)
    refused = run_cli(["submit", str(EXAMPLE)], env)
    assert refused.returncode != 0
    assert f"S3 bucket '{bucket}' does not exist" in refused.stderr, refused.stderr[-3000:]
    assert "Traceback" not in refused.stderr
    assert bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]
    client.create_bucket(Bucket=bucket)  # as operations would
    submitted = run_cli(["submit", str(EXAMPLE)], env)
    assert submitted.returncode == 0, submitted.stderr
    first = run_cli(["run"], env)
    assert first.returncode == 0, first.stderr[-3000:]
    campaign = "ads/campaigns/_local/aurora-spring-launch/"  # CLI briefs: team `_local`
    # one spot per language x aspect, named for its first platform: the soft-caption master
    # and its burned-in-captions variant; no scene clips
    mp4s = sorted(k for k in _s3_objects(client, bucket)
                  if k.startswith(campaign) and k.endswith(".mp4"))
    variants = [f"{loc}/{aspect}/aurora-spring-launch_{loc}_{aspect}_youtube"
                for loc in ("de-DE", "en-US") for aspect in ("16x9", "9x16")]
    assert mp4s == [f"{campaign}{v}{suffix}" for v in variants
                    for suffix in (".burned.mp4", ".mp4")]
    for key in mp4s:
        local = tmp_path / "downloaded" / key
        local.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(local))
        _check_mp4(local)
        if key.endswith(".burned.mp4"):
            continue
        manifest = json.loads(client.get_object(
            Bucket=bucket, Key=key.removesuffix(".mp4") + ".manifest.json")["Body"].read())
        assert manifest["preview"] is True and manifest["qc"]["checks"]
        assert manifest["lineage"][-1]["kind"] == "brief"
        [scene] = manifest["spot"]["scenes"]
        assert scene["scene_id"] == "morning-run" and scene["seed"] is not None
        assert scene["render_id"] and scene["gpu_seconds"] > 0
        assert manifest["gpu_seconds"] == pytest.approx(scene["gpu_seconds"], abs=1e-3)
        assert manifest["spot"]["end_card_s"] == 1.0 and manifest["spot"]["duration_s"] == 2.0
    published = _check_deliverables(database, 4)
    assert all(r.published_uri and r.published_uri.startswith(f"s3://{bucket}/ads/campaigns/")
               for r in published)
    events = (tmp_path / "lineage" / "openlineage.jsonl").read_text().splitlines()
    assert any('"render.generate"' in e and '"COMPLETE"' in e for e in events)
    # finishing runs beside the renders: a scene finish starts before the last render is
    # stored (4 renders on one render actor, one after another; the finish's ffmpeg yields its
    # core to the renders, FINISH_NICENESS, so it may end after them)
    engine = make_engine(database)
    with session_scope(engine) as session:
        last_render = session.scalar(select(func.max(Artifact.created_at)).where(
            Artifact.kind == "clip"))
    engine.dispose()
    finish_starts = [datetime.fromisoformat(event["eventTime"]) for event in map(json.loads, events)
                     if event["eventType"] == "START" and event["job"]["name"] == "finish.variant"]
    assert finish_starts and last_render is not None
    assert min(finish_starts) < last_render, "scene finishes waited for every render"

    lineage = run_cli(["lineage", str(published[0].id)[:8]], env)
    assert lineage.returncode == 0 and "brief" in lineage.stdout and "clip" in lineage.stdout

    before = _s3_objects(client, bucket)
    assert run_cli(["submit", str(EXAMPLE)], env).returncode == 0
    again = run_cli(["run"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _s3_objects(client, bucket) == before, "a rerun of the same brief stored something"
    engine = make_engine(database)
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(RenderJob)) == 4
        statuses = [b.status for b in session.scalars(select(BriefRow))]
        assert statuses == ["done"], "the same brief submitted again must not be stored twice"
    engine.dispose()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_a_run_killed_mid_way_finishes_on_restart_without_duplicates(
        tmp_path: Path, checkpoint: Path, stop: signal.Signals) -> None:
    """Killed outright, or Ctrl-C (SIGINT to the whole process group, as a terminal sends it:
    the run stops within seconds and says so; it used to retry Prefect's server, killed by
    the same Ctrl-C, for minutes of tracebacks)."""
    env = cli_env(tmp_path, checkpoint)
    assert run_cli(["submit", str(EXAMPLE)], env).returncode == 0
    database = f"sqlite:///{tmp_path / 'mova_ads.db'}"
    stderr = (tmp_path / "run.err").open("wb")
    run = subprocess.Popen([*CLI, "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=stderr, start_new_session=True)
    engine = make_engine(database)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # kill as soon as the first render is recorded
            time.sleep(0.5)
            try:
                with session_scope(engine) as session:
                    done = session.scalar(select(func.count()).select_from(RenderJob).where(
                        RenderJob.status == "done")) or 0
            except Exception:  # noqa: BLE001 - tables may not exist yet
                continue
            if done >= 1:
                break
        else:
            pytest.fail("no render finished in time")
    finally:
        os.killpg(run.pid, stop)  # the whole run: CLI, Prefect server, Ray workers
        stopped_at = time.monotonic()
        run.wait(timeout=60)
        stderr.close()
    if stop == signal.SIGINT:
        said = (tmp_path / "run.err").read_text()
        assert run.returncode == 130, said[-3000:]
        assert time.monotonic() - stopped_at < 20, "Ctrl-C took long to end the run"
        assert "interrupted: stopping" in said and "ConnectError" not in said, said[-3000:]
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Deliverable).where(
            Deliverable.status == "published")) < 4, "killed too late to test recovery"
    restarted = run_cli(["run"], env)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    _check_deliverables(database, 4)
    with session_scope(engine) as session:
        jobs = list(session.scalars(select(RenderJob)))
        assert len(jobs) == 4 and all(j.status == "done" for j in jobs)
        clips = list(session.scalars(select(Artifact).where(Artifact.kind == "clip")))
        assert len(clips) == 4
    engine.dispose()
    # the embedded defaults' layout: the 4 spots (and their burned-in variants) in the local
    # folder under campaigns/<team>/<campaign>/<locale>/<aspect>/
    campaign = tmp_path / "storage" / "campaigns" / "_local" / "aurora-spring-launch"
    spots = sorted(p.relative_to(campaign).as_posix() for p in campaign.rglob("*.mp4"))
    assert len(spots) == 8 and all(name.endswith("_youtube.mp4") or
                                   name.endswith("_youtube.burned.mp4") for name in spots)
    renders = list((tmp_path / "storage" / "renders").rglob("*.npz"))
    assert len(renders) == 4, "a render was stored twice"
    assert not list((tmp_path / "storage").rglob(".tmp-*")), "a partial object was left"


def _group_processes(group: int) -> dict[int, str]:
    """The running processes of process group `group` (a run started in its own session, as
    a terminal starts a command): pid -> command line."""
    return {pid: process.command for pid, process in running_processes().items()
            if process.group == group}


def test_ctrl_c_as_ray_starts_leaves_none_of_its_processes(tmp_path: Path,
                                                          checkpoint: Path) -> None:
    """Ctrl-C a moment after the local Ray's raylet comes up: Ray's agents, still starting,
    ignored it, `ray.shutdown` does not stop them, and they outlived the run by about a
    minute; at times Prefect's temporary server, whose start thread the Ctrl-C does not stop,
    came up after its stop handler had run and outlived the run for good. Now the run ends
    what it started as it exits."""
    env = cli_env(tmp_path, checkpoint)
    assert run_cli(["submit", str(EXAMPLE)], env).returncode == 0
    with (tmp_path / "run.err").open("wb") as stderr:
        run = subprocess.Popen([*CLI, "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not any("raylet" in line for line in _group_processes(run.pid).values()):
            assert run.poll() is None and time.monotonic() < deadline, (
                (tmp_path / "run.err").read_text()[-3000:])
            time.sleep(0.05)
        os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        assert run.wait(timeout=60) == 130, (tmp_path / "run.err").read_text()[-3000:]
        # nothing the run started is left: Ray's processes nor Prefect's temporary server
        assert _group_processes(run.pid) == {}
    finally:
        if run.poll() is None:
            run.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGKILL)


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda t: t.replace("[en-US, de-DE]", "[en-US, xx-QQ]"), "locales[1]"),
    (lambda t: t.replace("campaign: aurora-spring-launch", "campaign: ../../etc"), "campaign:"),
    (lambda t: t[: t.index("scenes:")] + "scenes: []\n", "scenes:"),
    (lambda t: t.replace("duration_s: 1.0", "duration_s: -1"), "scenes[0].duration_s"),
    (lambda t: t + "notes: " + "x" * 10_000_000 + "\n", "the limit is 1,000,000"),
    (lambda t: t + "  - [broken\n", "invalid YAML"),
])
def test_malformed_briefs_are_rejected_and_leave_nothing(tmp_path: Path, checkpoint: Path,
                                                         edit: object, needle: str) -> None:
    brief = tmp_path / "brief.yaml"
    brief.write_text(edit(EXAMPLE.read_text()))  # type: ignore[operator]
    data = tmp_path / "data"
    result = run_cli(["submit", str(brief)], cli_env(data, checkpoint), timeout=60)
    assert result.returncode == 1
    assert needle in result.stderr and "Traceback" not in result.stderr
    database = data / "mova_ads.db"
    if database.exists():
        engine = make_engine(f"sqlite:///{database}")
        with session_scope(engine) as session:
            assert session.scalar(select(func.count()).select_from(BriefRow)) == 0
        engine.dispose()
    storage = data / "storage"
    assert not storage.exists() or not any(p.is_file() for p in storage.rglob("*"))


def test_a_brief_whose_planning_fails_waits_for_the_next_run_and_says_why(
        tmp_path: Path, checkpoint: Path) -> None:
    """Planning that fails (here: the brief's uploaded first frame is gone from storage) once
    left the brief claimed for good; then it waited in `submitted` with no reason anywhere.
    Now it waits for the next run, and the page, the API and `status` say why."""
    import shutil

    from PIL import Image

    folder = tmp_path / "brief"
    folder.mkdir()
    shutil.copy(EXAMPLE.parent / "logo.png", folder / "logo.png")
    Image.new("RGB", (112, 64), (200, 120, 40)).save(folder / "hero.png")
    (folder / "brief.yaml").write_text(EXAMPLE.read_text().replace(
        "    duration_s: 1.0\n", "    duration_s: 1.0\n    first_frame: hero.png\n", 1))
    data = tmp_path / "data"
    env = cli_env(data, checkpoint)
    submitted = run_cli(["submit", str(folder / "brief.yaml")], env, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    [upload] = [p for p in (data / "storage" / "inputs").rglob("*.png")
                if p.read_bytes() == (folder / "hero.png").read_bytes()]
    upload.unlink()
    failed = run_cli(["run"], env, timeout=600)
    # exit 1 with one line for the brief, not 200 lines of Prefect and typer tracebacks
    assert failed.returncode == 1, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr, failed.stderr[-3000:]
    assert "aurora-spring-launch  submitted" in failed.stderr
    engine = make_engine(f"sqlite:///{data / 'mova_ads.db'}")
    with session_scope(engine) as session:
        [brief] = session.scalars(select(BriefRow)).all()
        assert (brief.status, brief.claimed_by) == ("submitted", None)
        [[path, reason]] = brief.problems
    engine.dispose()
    assert path == "(planning)" and reason.startswith("planning failed and is tried again by "
                                                      "the next production run: ")
    assert upload.name in reason
    status = run_cli(["status"], env, timeout=60)
    assert upload.name in "".join(status.stdout.split()), status.stdout

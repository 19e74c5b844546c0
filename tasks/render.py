"""Render jobs: run pending model renders on the Ray pool and record their clips.

The pool's actors hold a `RenderModel` (the loaded pipeline and a storage client); a call sends
a small JSON payload and gets back the stored clip's key and checksum, never arrays.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from infra import repository as repo
from infra.db import session_scope
from infra.gpu_pool import GpuPool, PoolConfig
from infra.hashing import sha256_bytes
from infra.images import decode_picture, limit_decoded_pixels, verify_image
from infra.settings import Settings
from infra.statuses import RENDER_SETTLED, RenderStatus
from infra.storage import ObjectStore, get_reference, open_store
from schemas.plan import RenderMode, RenderSpec
from tasks.faults import (
    MAX_RENDER_ATTEMPTS,
    RETRY_BACKOFF_S,
    is_transient,
    readable_reason,
    retry_delay_s,
    run_logger,
)
from tasks.lora import apply_lora
from tasks.render_order import spots_first
from tasks.retry import retried_when_transient, retry_on_transient
from tasks.services import Services

CLIP_CONTENT_TYPE = "application/x-npz"


class RenderPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    job_id: UUID
    spec: RenderSpec
    master_clip_key: str | None = None
    previous_clip_key: str | None = None  # continuity: the clip whose last frame starts this one


class RenderResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    job_id: UUID
    key: str
    uri: str
    sha256: str
    size_bytes: int
    seconds: float
    params: dict[str, Any]


# ---- clip files -----------------------------------------------------------------------------


def clip_to_npz(video: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int,
                params: dict[str, Any]) -> bytes:
    """A lossless, compressed clip file (frames, soundtrack, rates, generation settings)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, video=video, audio=audio, fps=np.float64(fps),
                        sample_rate=np.int64(sample_rate), params=json.dumps(params))
    return buffer.getvalue()


@dataclass(frozen=True)
class ClipArrays:
    video: np.ndarray
    audio: np.ndarray
    fps: float
    sample_rate: int
    params: dict[str, Any]


def read_clip(store: ObjectStore, key: str) -> ClipArrays:
    with tempfile.TemporaryDirectory() as tmp:
        path = store.get_file(key, Path(tmp) / "clip.npz")
        with np.load(path) as data:
            return ClipArrays(video=data["video"], audio=data["audio"], fps=float(data["fps"]),
                              sample_rate=int(data["sample_rate"]),
                              params=json.loads(str(data["params"])))


def clip_key(sha256: str) -> str:
    return f"renders/{sha256[:2]}/{sha256}.npz"


# ---- inside the Ray actor --------------------------------------------------------------------


@dataclass
class RenderModel:
    pipeline: Any  # mova_model.pipeline.MovaPipeline
    store: ObjectStore
    settings: Settings
    lora_sha256: str | None = None  # the registered LoRA the pipeline holds (issue 11)


def cpu_render_threads(settings: Settings, cores: int) -> int:
    """Torch threads for one CPU render actor on a node of `cores` cores: RENDER_THREADS, else
    the cores less one (for the flow's finishing beside the renders), split among the actors.
    A render's many small ops each wait for all its threads, so one thread preempted by an
    ffmpeg encode stalls the others (measured in bench/README.md, `brief_wall.py`)."""
    if settings.render_threads is not None:
        return settings.render_threads
    actors = settings.render_workers * settings.render_context_parallel
    return max(1, (cores - 1) // actors)


def load_render_model(settings_json: str) -> RenderModel:
    """Actor start-up: load the pipeline once (it stays resident) and open storage."""
    import torch

    from mova_model.pipeline import MovaPipeline

    settings = Settings.model_validate_json(settings_json)
    limit_decoded_pixels(settings.max_first_frame_pixels)  # PIL's bomb guard, at our limit
    ranks = settings.render_context_parallel  # a gang member: the pool joined its group
    if settings.mova_device == "cpu":
        torch.set_num_threads(cpu_render_threads(settings, os.cpu_count() or 1))
    pipeline = MovaPipeline.from_pretrained(settings.checkpoint, dtype=settings.mova_dtype,
                                            device=settings.mova_device,
                                            offload=settings.mova_offload,
                                            context_parallel=ranks)
    store = open_store(settings.storage, endpoint_url=settings.s3_endpoint_url,
                       region=settings.aws_region)
    return RenderModel(pipeline=pipeline, store=store, settings=settings)


def fetch_first_frame(settings: Settings, store: ObjectStore, ref: str, dest: Path) -> Path:
    """A brief's first-frame image into `dest`: a key of our store, or an s3:// URI."""
    return get_reference(store, ref, dest, endpoint_url=settings.s3_endpoint_url,
                         region=settings.aws_region)


def _first_frame(model: RenderModel, request: RenderPayload) -> tuple[Any, dict[str, Any]]:
    """The first-frame condition of a render (None for text only) and what it was, for the
    clip's params: the continued clip's last frame, or the brief's image checked against the
    hash the render key was made with."""
    spec = request.spec
    if spec.continue_from is not None:
        if request.previous_clip_key is None:
            raise ValueError(f"render {spec.key[:12]} continues {spec.continue_from[:12]} but "
                             "was sent without that clip")
        frame = np.ascontiguousarray(read_clip(model.store, request.previous_clip_key).video[-1])
        return frame, {"continues": spec.continue_from, "sha256": sha256_bytes(frame.tobytes()),
                       "shape": list(frame.shape)}
    if spec.first_frame is None:
        return None, {}

    with tempfile.TemporaryDirectory() as tmp:
        path = fetch_first_frame(model.settings, model.store, spec.first_frame, Path(tmp) / "f")
        data = path.read_bytes()
        # Checked again as at submission (an S3 object can be replaced since, and PIL's own
        # guard only refuses at twice its limit): ImageRejected, a permanent error with a
        # reason for the team, instead of decoding whatever is there now.
        verify_image(data, max_pixels=model.settings.max_first_frame_pixels,
                     max_bytes=model.settings.max_first_frame_bytes)
        sha = sha256_bytes(data)
        if spec.first_frame_sha256 is not None and sha != spec.first_frame_sha256:
            raise ValueError(f"first frame {spec.first_frame} changed since the brief was "
                             f"planned (sha256 {sha[:12]}, planned {spec.first_frame_sha256[:12]})"
                             "; submit the brief again")
        return decode_picture(data), {"ref": spec.first_frame, "sha256": sha}


def render_on_worker(model: RenderModel, payload: dict[str, Any]) -> dict[str, Any] | None:
    """Generate one clip and store it; returns a RenderResult as a dict."""
    request = RenderPayload.model_validate(payload)
    spec = request.spec
    started = time.monotonic()
    video = None
    if spec.mode == RenderMode.AUDIO_ONLY:
        if request.master_clip_key is None:
            raise ValueError(f"audio-only render {spec.key[:12]} has no master clip")
        video = read_clip(model.store, request.master_clip_key).video
    model.lora_sha256 = apply_lora(model.pipeline, spec.lora, model.store,
                                   model.settings.mova_data_dir / "lora-cache", model.lora_sha256)
    image, first_frame = _first_frame(model, request)
    # The request was validated when the plan was made; the model runs it as is.
    clip = model.pipeline.generate(spec.request, image=image, video=video)
    if model.pipeline.context_parallel is not None and model.pipeline.context_parallel.rank:
        return None  # every rank of a gang holds the clip; rank 0 stores and answers
    params = clip.params.to_dict()
    if spec.lora is not None:  # the registry's name and digest beside what the model applied
        params["lora"] = {**spec.lora.model_dump(mode="json"), **params["lora"]}
    if first_frame:
        params["first_frame"] = first_frame
    data = clip_to_npz(clip.video, clip.audio, clip.fps, clip.sample_rate, params)
    sha = sha256_bytes(data)
    stored = model.store.put_bytes(data, clip_key(sha), content_type=CLIP_CONTENT_TYPE,
                                   metadata={"spec_key": spec.key})
    return RenderResult(job_id=request.job_id, key=clip_key(sha), uri=stored.uri, sha256=sha,
                        size_bytes=stored.size_bytes, seconds=time.monotonic() - started,
                        params=params).model_dump(mode="json")


# ---- in the flow -----------------------------------------------------------------------------


def open_pool(settings: Settings) -> GpuPool:
    """The render pool as configured: local CPU actors by default, GPU actors on a cluster."""
    from functools import partial

    config = PoolConfig(num_workers=settings.render_workers,
                        num_gpus_per_worker=settings.render_gpus_per_worker,
                        num_cpus_per_worker=1.0 if settings.render_gpus_per_worker == 0 else 0.0,
                        max_in_flight=settings.render_max_in_flight,
                        gang_size=settings.render_context_parallel,
                        address=settings.ray_address, include_dashboard=settings.ray_dashboard)
    return GpuPool(partial(load_render_model, actor_settings_json(settings)), config)


# Settings a render actor never reads and must not carry: Ray keeps an actor's arguments in its
# control store (readable by anyone with access to the cluster), and GPU nodes are often run by
# another team than the database.
ACTOR_WITHHELD: dict[str, Any] = {"database_url": "", "openlineage_api_key": None}


def actor_settings_json(settings: Settings) -> str:
    """The settings a render actor loads with, without the database URL (its password) and
    the lineage API key: the flow records results and lineage, the actor only renders."""
    return settings.model_copy(update=ACTOR_WITHHELD).model_dump_json()


# The pools a run keeps open from one brief to the next (`keep_pools_open`), by the settings
# their actors load with; None outside such a run. Each is a future: a pool still being opened
# in the background (`warm`) is waited for by the first brief that needs it.
_kept_pools: dict[str, Future[GpuPool]] | None = None


def _pool_key(settings: Settings) -> str:
    return settings.model_dump_json()


@contextmanager
def keep_pools_open(warm: Settings | None = None) -> Iterator[None]:
    """Within this block each brief's render pool stays open for the next brief, so a run of
    many briefs loads the model once (at 720p on a GPU, loading costs minutes a brief); every
    pool is shut down when the block ends. Nested blocks share the outermost one's pools.

    `warm`: start opening the pool for these settings at once, in the background, so that
    Ray's start and the actors' model load overlap what the run does first (Prefect's server
    start, planning) instead of following it."""
    global _kept_pools
    if _kept_pools is not None:
        yield
        return
    _kept_pools = {}
    if warm is not None:
        _exit_on_sigterm()
        _kept_pools[_pool_key(warm)] = _open_in_background(warm)
    try:
        yield
    finally:
        pools, _kept_pools = _kept_pools, None
        for opening in pools.values():
            if opening.exception() is None:  # (waits for one still opening)
                opening.result().shutdown()


def _exit_on_sigterm() -> None:
    """What `ray.init` does on the main thread, and cannot from the opener's: SIGTERM exits
    through sys.exit, so that atexit handlers stop Ray and Prefect's temporary server."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))
    logging.getLogger("ray._private.worker").addFilter(
        lambda record: "SIGTERM handler is not set" not in record.getMessage())


def _open_in_background(settings: Settings) -> Future[GpuPool]:
    opening: Future[GpuPool] = Future()

    def run() -> None:
        try:
            opening.set_result(open_pool(settings))
        except BaseException as err:  # noqa: BLE001 - raised where the pool is used
            opening.set_exception(err)
        # Ray ends the processes a local start launched (GCS, raylet) when the thread that
        # launched them ends (their parent-death signal is per thread), so this thread stays
        # for the life of the process.
        threading.Event().wait()

    threading.Thread(target=run, name="render-pool-opener", daemon=True).start()
    return opening


@contextmanager
def render_pool(settings: Settings) -> Iterator[GpuPool]:
    """The pool one brief renders on: the run's kept pool for these settings when the run
    keeps pools (opened on first use, or being opened since the run began), else a pool of
    its own, shut down afterwards. A brief that ends in an error takes its pool down with it:
    the next brief starts on new actors."""
    if _kept_pools is None:
        pool = open_pool(settings)
        try:
            yield pool
        finally:
            pool.shutdown()
        return
    key = _pool_key(settings)
    if key not in _kept_pools:
        opened: Future[GpuPool] = Future()
        opened.set_result(open_pool(settings))
        _kept_pools[key] = opened
    try:
        kept = _kept_pools[key].result()
    except BaseException:
        del _kept_pools[key]  # it could not open: the next brief tries again
        raise
    try:
        yield kept
    except BaseException:
        _kept_pools.pop(key).result().shutdown()
        raise


def pending_payloads(services: Services, brief_id: UUID) -> list[dict[str, Any]]:
    """Render jobs of this brief that still need running and can run now: a dub waits for its
    master, a continued scene for the render it continues (and fails, with the reason, when
    that one failed). Jobs a dead run left `running` are taken again."""
    with session_scope(services.engine) as session:
        jobs = repo.brief_render_jobs(session, brief_id)
        payloads = []
        # Inputs before the renders that need them, so a failure settles a whole chain at once;
        # within each step of the chains, the order that completes spots the soonest.
        for job in _run_order(jobs, repo.get_brief(session, brief_id).deliverables):
            if job.status in RENDER_SETTLED:
                continue
            spec = RenderSpec.model_validate(job.spec)
            inputs: dict[str, str | None] = {"master_clip_key": None, "previous_clip_key": None}
            blocked = False
            sources = (("master_clip_key", spec.master_key, "master picture"),
                       ("previous_clip_key", spec.continue_from, "scene it continues"))
            for name, key, role in sources:
                if key is None:
                    continue
                needed = jobs[key]
                if needed.status == RenderStatus.FAILED:
                    repo.start_render(job)
                    repo.fail_render(session, job.id, f"the render of the {role} "
                                     f"({needed.spec['scene_id']}) failed: {needed.error}")
                    blocked = True
                    break
                if needed.status != RenderStatus.DONE or needed.clip is None:
                    blocked = True
                    break
                inputs[name] = _key_of(needed.clip)
            if blocked:
                continue
            repo.start_render(job)
            payloads.append(RenderPayload(job_id=job.id, spec=spec,
                                          **inputs).model_dump(mode="json"))
    return payloads


def _run_order(jobs: dict[str, repo.RenderJob],
               variants: list[repo.Deliverable]) -> list[repo.RenderJob]:
    """The brief's render jobs, inputs first (by depth), each depth spots first."""
    scenes = [d for d in variants if d.kind == repo.DeliverableKind.SCENE]
    renders_of: dict[tuple[str, str], set[str]] = {}
    for scene in scenes:
        renders_of.setdefault((scene.locale, scene.aspect), set()).add(scene.render_key)
    spot_needs = [frozenset(renders_of.get((d.locale, d.aspect), ())) for d in variants
                  if d.kind == repo.DeliverableKind.SPOT]
    uses = Counter(scene.render_key for scene in scenes)
    done = {key for key, job in jobs.items() if job.status == RenderStatus.DONE}
    by_depth: dict[int, list[str]] = {}
    for key in jobs:
        by_depth.setdefault(_depth(jobs, key), []).append(key)
    order: list[str] = []
    for depth in sorted(by_depth):
        order += spots_first(by_depth[depth], spot_needs, uses, done=done | set(order))
    return [jobs[key] for key in order]


def _depth(jobs: dict[str, repo.RenderJob], key: str) -> int:
    """How many renders stand before this one (masters, continued scenes); chains are short
    and loop-free (the brief's validation refuses loops)."""
    spec = jobs[key].spec
    inputs = [spec[name] for name in ("master_key", "continue_from") if spec.get(name) in jobs]
    return 1 + max((_depth(jobs, k) for k in inputs), default=-1)


def _key_of(artifact: repo.Artifact) -> str:
    return str(artifact.params["key"])


@retried_when_transient  # a dropped connection must not cost a render: the clip is stored
def record_render(services: Services, brief_id: UUID, result: RenderResult,
                  node: str | None = None) -> None:
    """Clip artifact with its lineage (the plan, and the master clip for a dub); job done.
    `node`: the Ray node that rendered it (kept in the clip's params, issue 11). A prompt the
    model cut (past its 512 tokens, as the release does) is logged as a warning. Safe to run
    again: the artifact is found rather than added twice, and a job already done stays so.
    A transient database error is tried again here, not by the task's retry, which would
    render the clip again (the job still `running`)."""
    with session_scope(services.engine) as session:
        job = repo.get_render_job(session, result.job_id)
        spec = RenderSpec.model_validate(job.spec)
        if job.status == RenderStatus.DONE:  # an earlier try committed before its error
            return
        plan = repo.plan_artifact(session, repo.get_brief(session, brief_id))
        parents = [plan] if plan is not None else []
        for source in (spec.master_key, spec.continue_from):  # the master, the continued clip
            if source is not None and (clip := repo.render_job(session, source).clip) is not None:
                parents.append(clip)
        artifact = repo.add_artifact(
            session, kind="clip", input_key=job.spec_key, sha256=result.sha256, uri=result.uri,
            size_bytes=result.size_bytes, content_type=CLIP_CONTENT_TYPE,
            task="render.generate", code_version=services.code_version,
            params={"key": result.key, "spec": job.spec, "generation": result.params,
                    "node": node},
            checkpoint=spec.checkpoint[:64], seed=spec.seed, parents=parents)
        repo.finish_render(session, job.id, artifact, result.seconds)
    if result.params.get("prompt_truncated"):  # absent from clips of workers before the flag
        tokens, kept = result.params["prompt_tokens"], result.params["prompt_tokens_kept"]
        run_logger().warning("render.prompt_truncated render_key=%s job_id=%s prompt_tokens=%d "
                             "kept=%d dropped=%d", spec.key, result.job_id, tokens, kept,
                             tokens - kept)


def record_failure(services: Services, job_id: UUID, error: str) -> None:
    with session_scope(services.engine) as session:
        repo.fail_render(session, job_id, error)


def lora_group(payload: dict[str, Any]) -> str | None:
    """The LoRA a render needs its actor to hold (the pool routes by it)."""
    lora = payload["spec"].get("lora")
    return None if lora is None else str(lora["sha256"])


@dataclass
class RenderTally:
    """What one pass over a brief's renders did (logged, and read by the fault tests)."""
    rendered: int = 0
    retried: int = 0
    failed: list[str] = field(default_factory=list)


def run_pending_renders(services: Services, pool: GpuPool, brief_id: UUID, *,
                        fn: Callable[[Any, Any], Any] = render_on_worker,
                        max_attempts: int = MAX_RENDER_ATTEMPTS,
                        backoff_s: float = RETRY_BACKOFF_S,
                        sleep: Callable[[float], None] = time.sleep,
                        on_rendered: Callable[[UUID], None] | None = None) -> RenderTally:
    """Run every render the brief still needs (masters first, then their dubs); each stored
    render's job id goes to `on_rendered` at once (finishing starts while others render).

    A transient failure (the actor died, storage or the database dropped a request) sends the
    job back to pending and it runs again after a backoff, up to `max_attempts` runs; any other
    failure fails that job, with a reason the team can read, and the rest go on."""
    logger = run_logger()
    tally = RenderTally()
    runs: dict[UUID, UUID] = {}  # job -> its lineage run, started when an actor takes it

    def started(payload: dict[str, Any]) -> None:
        runs[UUID(payload["job_id"])] = run_id = uuid4()
        services.lineage.start("render.generate", run_id, [])

    while payloads := pending_payloads(services, brief_id):
        retries_this_round = 0
        for outcome in pool.map_unordered(fn, payloads, key=lambda p: str(p["job_id"]),
                                          group=lora_group, on_start=started):
            job_id = UUID(outcome.payload["job_id"])
            if (run_id := runs.pop(job_id, None)) is None:  # no actor could take it
                started(outcome.payload)
                run_id = runs.pop(job_id)
            if outcome.ok:
                result = RenderResult.model_validate(outcome.value)
                record_render(services, brief_id, result, node=outcome.node)
                services.lineage.complete("render.generate", run_id, [], [result.uri])
                if on_rendered is not None:
                    on_rendered(job_id)
                tally.rendered += 1
                logger.info("render.done job_id=%s seconds=%.1f", job_id, result.seconds)
                continue
            assert outcome.error is not None
            reason = readable_reason(outcome.error)
            services.lineage.fail("render.generate", run_id, [], reason)
            if is_transient(outcome.error):
                with session_scope(services.engine) as session:
                    requeued = repo.requeue_render(session, job_id, reason, max_attempts)
                if requeued:
                    tally.retried += 1
                    retries_this_round += 1
                    logger.warning("render.retry job_id=%s error=%s", job_id, reason)
                    continue
            else:
                record_failure(services, job_id, reason)
            tally.failed.append(f"{job_id}: {reason}")
            logger.error("render.failed job_id=%s error=%s", job_id, reason)
        if retries_this_round:
            sleep(retry_delay_s(tally.retried, base_s=backoff_s))
    if tally.failed:
        logger.error("render.failures n=%d", len(tally.failed))
    return tally


# A rerun is safe: finished renders are recorded and skipped, a job left running is taken again.
@task(name="render.generate", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def render_pending_task(services: Services, pool: GpuPool, brief_id: UUID,
                        on_rendered: Callable[[UUID], None] | None = None) -> int:
    """Run every render the brief still needs; returns the number rendered now. Failures are
    recorded on the job (transient ones retried first) and reported, not swallowed."""
    return run_pending_renders(services, pool, brief_id, on_rendered=on_rendered).rendered

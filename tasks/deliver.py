"""Finish each variant from its render, gate it with QC, publish it with a manifest."""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import session_scope
from infra.repository import Artifact, BriefRow, Deliverable, DeliverableKind
from infra.statuses import DELIVERABLE_IN_REVIEW_AREA, DeliverableStatus, RenderStatus
from infra.storage import ObjectStore, deliverable_key, legacy_deliverable_key
from schemas.brief import Aspect, Brief, load_brief
from schemas.finishing import (
    LOUDNESS_TARGETS,
    FinishResult,
    FinishSpec,
    QCReport,
    X264Preset,
    x264_key_entry,
)
from schemas.plan import RenderSpec
from schemas.spot import plan_spots
from tasks.captions import caption_cues
from tasks.faults import readable_reason
from tasks.finishing import finish_clip
from tasks.qc import QCAction, next_action
from tasks.render import ClipArrays, read_clip
from tasks.retake import retake
from tasks.retry import retry_on_transient
from tasks.services import Services
from tasks.spot import SpotResult

MP4, SRT, VTT, JSON_TYPE = "video/mp4", "application/x-subrip", "text/vtt", "application/json"
REVIEW_PREFIX = "review"
# The locale of a scene finish that every locale shares: nothing is said in it and it only feeds
# the spots (which tag their own language), so one file serves them all. ISO 639's "undetermined".
SHARED_FINISH_LOCALE = "und"
# A published scene's QC record names the file its spots are made from (the artifact id): the
# text-free finish beside the cut-down, which carries the scene's on-screen text
SPOT_SOURCE = "spot_source"


def _brief(row: BriefRow) -> Brief:
    return load_brief(row.raw, fmt="json")


def _finish_key(clip_sha: str, spec: FinishSpec, code_version: str,
                x264_preset: X264Preset) -> str:
    """What a finished file is made from: equal keys mean an identical deliverable (an
    intermediate's encoding is fixed, whatever the delivery preset)."""
    preset = {} if spec.intermediate else x264_key_entry(x264_preset)
    payload = json.dumps({"clip": clip_sha, "spec": spec.model_dump(mode="json"),
                          "code": code_version.split("+")[0], **preset}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class _SceneWork:
    """What finishing a scene needs, read in one short transaction (the encode runs outside
    any: parallel finishes must not hold the database while ffmpeg works)."""
    brief: Brief
    scene_id: str
    locale: str
    aspect: Aspect
    clip_key: str
    clip_sha256: str
    clip_artifact_id: UUID


def _scene_work(services: Services, deliverable_id: UUID) -> _SceneWork | DeliverableStatus:
    with session_scope(services.engine) as session:
        row = repo.get_deliverable(session, deliverable_id)
        if row.status != DeliverableStatus.PENDING:
            return row.status  # finished by an earlier run, or failed, or in review
        job = repo.render_job(session, row.render_key)
        if job.status != RenderStatus.DONE or job.clip is None:
            if job.status == RenderStatus.FAILED:
                repo.fail_deliverable(row, f"render failed: {job.error}")
            return row.status
        return _SceneWork(brief=_brief(row.brief), scene_id=row.scene_id, locale=row.locale,
                          aspect=Aspect(row.aspect), clip_key=str(job.clip.params["key"]),
                          clip_sha256=job.clip.sha256, clip_artifact_id=job.clip.id)


def finish_deliverable(services: Services, deliverable_id: UUID) -> DeliverableStatus:
    """Finish one scene variant; returns its new status (finished, pending = re-render,
    failed). What its spots are made from carries captions but no on-screen text: the spot
    burns the text on its own timeline (a finish with the text would show it twice). A brief
    that publishes its scenes gets a second file, the cut-down: encoded for delivery, with the
    scene's on-screen text and the burned-in-captions variant."""
    work = _scene_work(services, deliverable_id)
    if not isinstance(work, _SceneWork):
        return work
    brief = work.brief
    scene = next(s for s in brief.scenes if s.scene_id == work.scene_id)
    clip = read_clip(services.store, work.clip_key)
    lines = [line.text for line in scene.dialogue.get(work.locale, [])]
    spot_source = FinishSpec(aspect=work.aspect,
                             locale=work.locale if lines else SHARED_FINISH_LOCALE,
                             loudness=LOUDNESS_TARGETS[brief.loudness_profile],
                             captions=caption_cues(lines, clip.audio, clip.sample_rate),
                             focus=scene.focus, burned_variant=False, intermediate=True)
    finishes = [spot_source]
    if brief.publish_scenes:
        finishes.append(spot_source.model_copy(update={
            "locale": work.locale, "on_screen_text": scene.on_screen_text.get(work.locale),
            "burned_variant": True, "intermediate": False}))
    keys = [_finished_file(services, work, clip, finish) for finish in finishes]
    with session_scope(services.engine) as session:
        row = repo.get_deliverable(session, deliverable_id)
        if row.status != DeliverableStatus.PENDING:
            return row.status
        source, video = (repo.find_artifact(session, "video", key) for key in (keys[0], keys[-1]))
        assert source is not None and video is not None
        # the cut-down, when there is one, is what is published and reviewed (its QC report
        # judges the scene: the same render, encoded for delivery); spots take the source
        return _judge_scene(session, row, brief, video, finishes[-1],
                            spot_source=source if source.id != video.id else None)


def _finished_file(services: Services, work: _SceneWork, clip: ClipArrays,
                   finish: FinishSpec) -> str:
    """The input key of the scene's file finished as `finish`: encoded, QC'd, stored and
    recorded unless an earlier run or another locale did it already."""
    preset = services.settings.finish_x264_preset
    input_key = _finish_key(work.clip_sha256, finish, services.code_version, preset)
    with _finishing(input_key):  # the locales sharing a file wait for one encode of it
        with session_scope(services.engine) as session:
            if repo.find_artifact(session, "video", input_key) is not None:
                return input_key
        with tempfile.TemporaryDirectory() as tmp:  # encode and QC, upload (no transaction)
            result = finish_clip(clip.video, clip.audio, clip.fps, clip.sample_rate, finish,
                                 Path(tmp), name=work.scene_id, x264_preset=preset)
            stored = _upload_results(services, result, input_key)
        with session_scope(services.engine) as session:
            clip_artifact = session.get(Artifact, work.clip_artifact_id)
            assert clip_artifact is not None
            record_uploaded(services, session, stored, input_key, [clip_artifact],
                            "finish.variant")
    return input_key


# input key -> (its lock, threads holding or waiting for it); an entry goes with its last user,
# so a long-lived worker keeps none for files finished long ago
_FINISH_LOCKS: dict[str, tuple[threading.Lock, int]] = {}
_FINISH_LOCKS_GUARD = threading.Lock()


@contextmanager
def _finishing(input_key: str) -> Iterator[None]:
    """Held while one finished file is made in this process: the flow's finishing threads that
    need the same file encode it once (the later ones find the first one's artifact)."""
    with _FINISH_LOCKS_GUARD:
        lock, users = _FINISH_LOCKS.get(input_key, (threading.Lock(), 0))
        _FINISH_LOCKS[input_key] = (lock, users + 1)
    try:
        with lock:
            yield
    finally:
        with _FINISH_LOCKS_GUARD:
            lock, users = _FINISH_LOCKS.pop(input_key)
            if users > 1:
                _FINISH_LOCKS[input_key] = (lock, users - 1)


def _judge_scene(session: Session, row: Deliverable, brief: Brief, video: Artifact,
                 finish: FinishSpec, spot_source: Artifact | None = None) -> DeliverableStatus:
    """Accept the scene finish, re-render it with the next seed, or fail it (QC). A re-render
    sends the spots made from it back to be assembled again. `spot_source`: the file its
    spots are made from, when it is not `video` (a published cut-down)."""
    report = QCReport.model_validate(video.params["qc"])
    repo.set_finished_video(row, video, {"report": report.model_dump(mode="json"),
                                         "loudness": video.params["loudness"],
                                         "preview": video.params["preview"],
                                         "captions": [c.model_dump(mode="json")
                                                      for c in finish.captions],
                                         **({SPOT_SOURCE: str(spot_source.id)}
                                            if spot_source is not None else {})})
    action = next_action(report, row.attempts, brief.max_qc_retries)
    if action == QCAction.ACCEPT:
        repo.accept_deliverable(row)
    elif action == QCAction.RETRY:
        # A new render with the next seed; the variant waits for it.
        # (the scenes chained after it move along: they start from its new last frame)
        spec = RenderSpec.model_validate(repo.render_job(session, row.render_key).spec)
        retake(session, row, spec.with_seed(spec.seed + row.attempts + 1), reset_attempts=False,
               error="QC failed, re-rendering: " + "; ".join(report.failures))
        for spot in repo.spots_containing(session, row):
            repo.reopen_spot(spot, f"scene {row.scene_id} is re-rendered")
    else:
        repo.fail_deliverable(row, "QC failed: " + "; ".join(report.failures))
    return row.status


@dataclass(frozen=True)
class Uploaded:
    """A finished file in storage whose artifact row is not written yet."""
    kind: str
    key: str
    content_type: str
    sha256: str
    uri: str
    size_bytes: int
    params: dict[str, Any]


def _upload(services: Services, path: Path, key: str, content_type: str, kind: str,
            params: dict[str, Any]) -> Uploaded:
    stored = services.store.put_file(path, key, content_type=content_type)
    return Uploaded(kind=kind, key=key, content_type=content_type, sha256=stored.sha256,
                    uri=stored.uri, size_bytes=stored.size_bytes, params=params)


def record_uploaded(services: Services, session: Session, files: list[Uploaded],
                    input_key: str, parents: list[Artifact], task: str) -> None:
    """The artifact rows of files `upload_finished` stored (rows made before are kept)."""
    for file in files:
        repo.add_artifact(session, kind=file.kind, input_key=input_key, sha256=file.sha256,
                          uri=file.uri, size_bytes=file.size_bytes,
                          content_type=file.content_type, task=task,
                          code_version=services.code_version,
                          params={"key": file.key, **file.params}, parents=parents)


def upload_finished(services: Services, result: FinishResult | SpotResult, input_key: str,
                    params: dict[str, Any]) -> list[Uploaded]:
    """Store a finished file and its companions (burned-in variant, SRT, VTT) under keys made
    from `input_key`; `params` go with the video. Returns what `_record_file` records."""
    folder = f"deliverables/{input_key[:16]}"
    out = [_upload(services, Path(result.video_path), f"{folder}/video.mp4", MP4, "video",
                   params)]
    if result.burned_path is not None:
        out.append(_upload(services, Path(result.burned_path), f"{folder}/video.burned.mp4", MP4,
                           "video_burned", {}))
    for path, content_type, kind in ((result.srt_path, SRT, "captions_srt"),
                                     (result.vtt_path, VTT, "captions_vtt")):
        if path is not None:
            out.append(_upload(services, Path(path),
                               f"{folder}/captions{Path(path).suffix}", content_type, kind, {}))
    return out


def _upload_results(services: Services, result: FinishResult,
                    input_key: str) -> list[Uploaded]:
    params = {"qc": result.qc.model_dump(mode="json"), "preview": result.preview,
              "size": [result.width, result.height],
              "loudness": {"input_lufs": result.loudness_in_lufs,
                           "output_lufs": result.loudness_out_lufs,
                           "true_peak_dbtp": result.true_peak_out_dbtp}}
    return upload_finished(services, result, input_key, params)


FILE_SUFFIXES = {"video": ".mp4", "video_burned": ".burned.mp4", "captions_srt": ".srt",
                 "captions_vtt": ".vtt", "manifest": ".manifest.json"}


def published_key(row: Deliverable, kind: str, *, review: bool) -> str:
    """Where a deliverable's file of `kind` is published: the campaign layout
    (campaigns/<team>/<campaign>/...; a later brief of the campaign publishes over it), or,
    while it waits for approval, under review/ in its brief's own folder
    (review/campaigns/<team>/<campaign>/brief-<id>/...), so that an edited brief sent again
    cannot replace the files of one still in review. The team and slug come from the brief's
    campaign row, never from the brief text, so one team's brief cannot name another team's
    keys."""
    campaign = row.brief.campaign
    key = deliverable_key(campaign.team, campaign.slug, row.locale, row.aspect,
                          file_stem(row) + FILE_SUFFIXES[kind],
                          brief=str(row.brief_id) if review else None)
    return f"{REVIEW_PREFIX}/{key}" if review else key


def own_file_key(session: Session, row: Deliverable, kind: str) -> str:
    """The key of this deliverable's own file of `kind`, which nothing overwrites: the
    finished file as uploaded (deliverables/...), or the copy of the manifest published for
    it. Its published key may hold a later brief's file of the same campaign variant."""
    assert row.video is not None
    if kind == "manifest":
        manifest = repo.deliverable_manifest(session, row)
        if manifest is None:
            raise LookupError(f"deliverable {row.id} has no manifest recorded")
        return str(manifest.params.get("copy", manifest.params["key"]))
    own = {a.kind: a for a in [row.video, *_companions(session, row.video)]}
    return str(own[kind].params["key"])


def file_stem(row: Deliverable) -> str:
    """A scene finish's files are named after the scene; a spot's after its first platform's
    deliverable name (`<campaign>_<locale>_<aspect, e.g. 9x16>_<platform>`, see
    schemas.platforms), the other platforms' names being listed in its manifest."""
    if row.kind != DeliverableKind.SPOT:
        return row.scene_id
    spec = next(s for s in plan_spots(_brief(row.brief)) if s.spot_id == row.name)
    return spec.file_names[spec.platforms[0]].removesuffix(".mp4")


def _legacy_key(row: Deliverable, kind: str, *, review: bool) -> str:
    key = legacy_deliverable_key(row.brief.campaign.slug, row.locale, row.aspect,
                                 row.scene_id + FILE_SUFFIXES[kind])
    return f"{REVIEW_PREFIX}/{key}" if review else key


def _manifest(session: Session, row: Deliverable, brief: Brief, files: list[dict[str, Any]],
              video: Artifact, approval: dict[str, Any] | None) -> dict[str, Any]:
    ancestry = repo.brief_lineage(session, video.id, row.brief)
    chain = [{"depth": depth, "kind": a.kind, "uri": a.uri, "sha256": a.sha256, "task": a.task,
              "seed": a.seed, "checkpoint": a.checkpoint, "code_version": a.code_version}
             for depth, a in ancestry]
    clip = next((a for _, a in ancestry if a.kind == "clip"), None)
    if row.kind == DeliverableKind.SPOT:
        return _spot_manifest(session, row, brief, files, video, chain, approval)
    job = repo.render_jobs(session, [row.render_key]).get(row.render_key)
    # Content only (no row ids): the same brief and render give a byte-identical manifest, so
    # a rerun uploads nothing new.
    manifest = {
        "brief_sha256": row.brief.sha256, "variant": row.name,
        "team": repo.campaign_team(row.brief), "campaign": brief.campaign, "brand": brief.brand,
        "product": brief.product,
        "scene_id": row.scene_id, "locale": row.locale, "aspect": row.aspect,
        "dubbing": brief.dubbing.value, "preview": bool(row.qc and row.qc.get("preview")),
        "files": files, "qc": (row.qc or {}).get("report"),
        "loudness": (row.qc or {}).get("loudness"),
        "render": clip.params.get("generation") if clip is not None else None,
        # Measured: the seconds its render occupied a render worker (one GPU slot). A render
        # shared by variants (aspects cropped from one render) is counted in each manifest.
        "gpu_seconds": job.seconds if job is not None else None,
        "lineage": chain,
    }
    if approval is not None:
        manifest["approval"] = approval
    return manifest


def _spot_manifest(session: Session, row: Deliverable, brief: Brief, files: list[dict[str, Any]],
                   video: Artifact, chain: list[dict[str, Any]],
                   approval: dict[str, Any] | None) -> dict[str, Any]:
    """A spot's manifest: the scenes in order with their renders, seeds and measured
    GPU-seconds, the platforms and file names it serves, QC and loudness over the spot."""
    spot = dict(video.params["spot"])
    scenes = repo.spot_scenes(session, row)
    jobs = repo.render_jobs(session, [s.render_key for s in scenes.values()])
    for entry in spot["scenes"]:
        job = jobs.get(scenes[entry["scene_id"]].render_key)
        entry["gpu_seconds"] = job.seconds if job is not None else None
        entry["generation"] = job.clip.params.get("generation") \
            if job is not None and job.clip is not None else None
    measured = [e["gpu_seconds"] for e in spot["scenes"] if e["gpu_seconds"] is not None]
    manifest = {
        "brief_sha256": row.brief.sha256, "deliverable": "spot", "spot_id": row.name,
        "team": repo.campaign_team(row.brief), "campaign": brief.campaign, "brand": brief.brand,
        "product": brief.product, "locale": row.locale, "aspect": row.aspect,
        "dubbing": brief.dubbing.value, "preview": bool(row.qc and row.qc.get("preview")),
        "files": files, "qc": (row.qc or {}).get("report"),
        "loudness": (row.qc or {}).get("loudness"), "spot": spot,
        # Measured: render-worker seconds of every scene in the spot (a render shared with
        # other spots is counted in each of their manifests).
        "gpu_seconds": round(sum(measured), 3) if measured else None,
        "lineage": chain,
    }
    if approval is not None:
        manifest["approval"] = approval
    return manifest


def publish_files(services: Services, session: Session, row: Deliverable, *, review: bool,
                  approval: Artifact | None = None) -> None:
    """Copy the finished files to their published keys (see `published_key`) and write the
    manifest beside them; `approval` is the reviewer's decision, recorded in the manifest."""
    assert row.video is not None
    brief = _brief(row.brief)
    files = []
    for artifact in [row.video] + _companions(session, row.video):
        stored = services.store.copy(str(artifact.params["key"]),
                                     published_key(row, artifact.kind, review=review))
        files.append({"kind": artifact.kind, "uri": stored.uri, "sha256": stored.sha256,
                      "size_bytes": stored.size_bytes})
    decision = dict(approval.params) if approval is not None else None
    manifest = _manifest(session, row, brief, files, row.video, decision)
    data = json.dumps(manifest, indent=2, sort_keys=True).encode()
    key = published_key(row, "manifest", review=review)
    stored = services.store.put_bytes(data, key, content_type=JSON_TYPE)
    # and a copy no later brief overwrites, content-addressed beside the finished files
    digest = hashlib.sha256(data).hexdigest()
    copy = f"deliverables/{row.video.input_key[:16]}/manifest-{digest[:16]}.json"
    services.store.put_bytes(data, copy, content_type=JSON_TYPE)
    repo.add_artifact(session, kind="manifest", input_key=digest,
                      sha256=stored.sha256, uri=stored.uri, size_bytes=stored.size_bytes,
                      content_type=JSON_TYPE, task="publish.deliverable",
                      code_version=services.code_version, params={"key": key, "copy": copy},
                      parents=[row.video] + ([approval] if approval is not None else []))
    repo.set_published(row, manifest_uri=stored.uri, published_uri=str(files[0]["uri"]))


def publish_deliverable(services: Services, deliverable_id: UUID) -> DeliverableStatus:
    """Publish a finished variant to the campaign layout, or to the review area when the brief
    needs approval."""
    with session_scope(services.engine) as session:
        row = repo.get_deliverable(session, deliverable_id)
        if row.status != DeliverableStatus.FINISHED or row.video is None:
            return row.status
        review = _brief(row.brief).requires_approval
        publish_files(services, session, row, review=review)
        repo.transition(row, DeliverableStatus.IN_REVIEW if review
                        else DeliverableStatus.PUBLISHED)
        return row.status


COMPANION_KINDS = ("video_burned", "captions_srt", "captions_vtt")


def _companions(session: Session, video: Artifact) -> list[Artifact]:
    return repo.find_artifacts(session, COMPANION_KINDS, video.input_key)


@task(name="finish.variant", retries=1, retry_delay_seconds=2,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def finish_task(services: Services, deliverable_id: UUID) -> str:
    return run_traced(services, "finish.variant", deliverable_id, finish_deliverable)


def run_traced(services: Services, name: str, deliverable_id: UUID,
               work: Callable[[Services, UUID], str]) -> str:
    """`work` on one deliverable inside a task, as a lineage run named `name` whose output is
    the deliverable; logged with its new status."""
    run_id = uuid4()
    services.lineage.start(name, run_id, [])
    try:
        status = work(services, deliverable_id)
    except Exception as err:  # the run ends in FAIL (it stayed started for good); re-raised
        services.lineage.fail(name, run_id, [], readable_reason(err))
        raise
    services.lineage.complete(name, run_id, [], [f"deliverable:{deliverable_id}"])
    get_run_logger().info("%s.done deliverable_id=%s status=%s", name, deliverable_id, status)
    return status


@task(name="publish.deliverable", retries=2, retry_delay_seconds=5,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def publish_task(services: Services, deliverable_id: UUID) -> str:
    run_id = uuid4()
    inputs = [f"deliverable:{deliverable_id}"]
    services.lineage.start("publish.deliverable", run_id, inputs)  # OpenLineage: START first
    try:
        status = publish_deliverable(services, deliverable_id)
    except Exception as err:
        services.lineage.fail("publish.deliverable", run_id, inputs, readable_reason(err))
        raise
    services.lineage.complete("publish.deliverable", run_id, inputs, [])
    get_run_logger().info("publish.done deliverable_id=%s status=%s", deliverable_id, status)
    return status


def move_team_keys(session: Session, store: ObjectStore) -> tuple[int, int]:
    """After migration 0003: copy every published and in-review file from the old layout
    (campaigns/<campaign>/...) to its team's keys and point the rows at them; returns (files
    copied, files already in place). Idempotent: a file already at its new key is not copied
    again, so a run cut short is simply run again. The manifest is rewritten (its file URIs
    and team), not copied. Old keys stay until the operator deletes them."""
    copied = kept = 0
    for row in repo.published_deliverables(session):
        review = row.status in DELIVERABLE_IN_REVIEW_AREA
        kinds = ["video"] + [a.kind for a in _companions(session, row.video)] \
            if row.video is not None else []
        moved: dict[str, str] = {}  # old URI -> new URI
        for kind in kinds:
            old, new = _legacy_key(row, kind, review=review), published_key(row, kind,
                                                                               review=review)
            if store.exists(new):
                kept += 1
            elif store.exists(old):
                store.copy(old, new)
                copied += 1
            else:
                continue  # neither: nothing was published under this kind
            moved[store.uri_for(old)] = store.uri_for(new)
        old_manifest = _legacy_key(row, "manifest", review=review)
        new_manifest = published_key(row, "manifest", review=review)
        if store.exists(new_manifest):
            kept += 1
        elif store.exists(old_manifest):
            with tempfile.TemporaryDirectory() as tmp:
                body = json.loads(store.get_file(old_manifest, Path(tmp) / "m").read_text())
            body["team"] = repo.campaign_team(row.brief)
            for entry in body.get("files", []):
                entry["uri"] = moved.get(entry["uri"], entry["uri"])
            store.put_bytes(json.dumps(body, indent=2, sort_keys=True).encode(), new_manifest,
                            content_type=JSON_TYPE)
            copied += 1
        else:
            continue
        video_uri = store.uri_for(published_key(row, "video", review=review))
        repo.set_published(row, manifest_uri=store.uri_for(new_manifest),
                           published_uri=video_uri)
    return copied, kept

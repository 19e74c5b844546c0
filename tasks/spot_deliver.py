"""A spot deliverable from its finished scenes: assemble (cuts or crossfades, end card, one
loudness, text on the spot timeline), QC the spot, store it; the spot is then published and
reviewed like any deliverable (`tasks.deliver`).

Like a scene finish, the work runs outside any database transaction: one short transaction
reads what the spot is made of, ffmpeg runs, a second one records the result.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import session_scope
from infra.images import decode_picture
from infra.repository import Artifact, Deliverable, DeliverableKind
from infra.statuses import DeliverableStatus
from infra.storage import get_reference
from schemas.brief import Brief, load_brief
from schemas.finishing import TARGET_SIZES, CaptionCue, QCReport, X264Preset, x264_key_entry
from schemas.plan import RenderSpec
from schemas.spot import SpotSpec, plan_spots
from tasks.deliver import SPOT_SOURCE, Uploaded, record_uploaded, run_traced, upload_finished
from tasks.end_card import compose_end_card, end_card_text, write_end_card
from tasks.retry import retry_on_transient
from tasks.services import Services
from tasks.spot import SceneClip, assemble_measured_spot, spot_manifest
from tasks.spot_qc import run_spot_qc

# Scene finishes a spot can be made from: accepted, and (when cut-downs are published) out.
SCENE_READY = frozenset({DeliverableStatus.FINISHED, DeliverableStatus.PUBLISHED,
                         DeliverableStatus.IN_REVIEW, DeliverableStatus.APPROVED})


def spot_spec(brief: Brief, spot_id: str) -> SpotSpec:
    """The planned spot of `brief` with this id (the spot row's name)."""
    for spec in plan_spots(brief):
        if spec.spot_id == spot_id:
            return spec
    raise KeyError(f"brief {brief.campaign!r} plans no spot {spot_id!r}")


def ensure_spots(session: Session, brief_row: repo.BriefRow) -> list[Deliverable]:
    """A spot row for every spot the brief plans (idempotent; briefs planned before spots
    existed get theirs on their next run)."""
    brief = load_brief(brief_row.raw, fmt="json")
    return [repo.ensure_deliverable(session, brief_row, name=spec.spot_id, scene_id="",
                                    locale=spec.locale, aspect=spec.aspect.value, render_key="",
                                    kind=DeliverableKind.SPOT)
            for spec in plan_spots(brief)]


@dataclass(frozen=True)
class _Scene:
    scene_id: str
    video_key: str
    video_sha256: str
    video_id: UUID
    captions: list[CaptionCue]
    render_key: str
    seed: int
    preview: bool


@dataclass(frozen=True)
class _SpotWork:
    brief: Brief
    team: str
    spec: SpotSpec
    scenes: list[_Scene]


def _spot_work(services: Services, spot_id: UUID) -> _SpotWork | DeliverableStatus:
    """What the spot is made of, or its status when there is nothing to do now: not pending,
    a scene still waits (pending), or a scene failed (the spot fails with its reason)."""
    with session_scope(services.engine) as session:
        row = repo.get_deliverable(session, spot_id)
        if row.status != DeliverableStatus.PENDING:
            return row.status
        brief = load_brief(row.brief.raw, fmt="json")
        spec = spot_spec(brief, row.name)
        rows = repo.spot_scenes(session, row)
        scenes = []
        for scene_id in spec.scene_ids:
            scene = rows.get(scene_id)
            if scene is None or scene.status == DeliverableStatus.FAILED:
                reason = scene.error if scene is not None else "not planned"
                repo.fail_deliverable(row, f"scene {scene_id} failed: {reason}")
                return row.status
            if scene.status not in SCENE_READY or scene.video is None:
                return row.status  # that scene is still being made
            job = repo.render_job(session, scene.render_key)
            source = _spot_source(session, scene)
            scenes.append(_Scene(
                scene_id=scene_id, video_key=str(source.params["key"]),
                video_sha256=source.sha256, video_id=source.id,
                captions=[CaptionCue.model_validate(c)
                          for c in (scene.qc or {}).get("captions", [])],
                render_key=scene.render_key, seed=RenderSpec.model_validate(job.spec).seed,
                preview=bool((scene.qc or {}).get("preview"))))
        return _SpotWork(brief=brief, team=repo.campaign_team(row.brief), spec=spec,
                         scenes=scenes)


def _spot_source(session: Session, scene: Deliverable) -> Artifact:
    """The finished file of a scene a spot is made from: the text-free one beside a published
    cut-down (which carries the scene's on-screen text), else the scene's own."""
    source_id = (scene.qc or {}).get(SPOT_SOURCE)
    source = session.get(Artifact, UUID(source_id)) if source_id else scene.video
    assert source is not None
    return source


def _spot_key(work: _SpotWork, code_version: str, x264_preset: X264Preset) -> str:
    """What a spot is made from: equal keys mean an identical spot file."""
    payload = json.dumps({"scenes": [s.video_sha256 for s in work.scenes],
                          "captions": [[c.model_dump(mode="json") for c in s.captions]
                                       for s in work.scenes],
                          "spec": work.spec.model_dump(mode="json"),
                          "brand_kit": work.brief.brand_kit.model_dump(mode="json")
                          if work.brief.brand_kit else None,
                          "text": [text.model_dump(mode="json") if text else None
                                   for s in work.brief.scenes
                                   for text in [s.on_screen_text.get(work.spec.locale)]],
                          "code": code_version.split("+")[0], **x264_key_entry(x264_preset)},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def read_input(services: Services, ref: str, dest: Path) -> Path:
    """A file a brief points at, once submitted: a key of this store (`inputs/<team>/...`,
    where uploads land) or an s3:// URI (checked at submission)."""
    return get_reference(services.store, ref, dest, endpoint_url=services.settings.s3_endpoint_url,
                         region=services.settings.aws_region)


def _end_card(services: Services, work: _SpotWork, size: tuple[int, int],
              workdir: Path) -> Path | None:
    kit = work.brief.brand_kit
    if kit is None or work.spec.end_card_s == 0:
        return None
    logo_path = read_input(services, kit.logo, workdir / f"logo{Path(kit.logo).suffix}")
    font = read_input(services, kit.font, workdir / f"font{Path(kit.font).suffix}") \
        if kit.font else None
    logo = decode_picture(logo_path.read_bytes(), keep_alpha=True)
    card = compose_end_card(size=size, text=end_card_text(work.brief, work.spec.locale),
                            logo=logo, colours=kit.colours, safe_zone=work.spec.safe_zone,
                            brand_font=font)
    return write_end_card(card, workdir / "end_card.png")


def _assemble(services: Services, work: _SpotWork, input_key: str,
              workdir: Path) -> list[Uploaded]:
    """Download the scene finishes, assemble and QC the spot, upload its files."""
    spec = work.spec
    clips = []
    for scene in work.scenes:
        path = services.store.get_file(scene.video_key, workdir / f"{scene.scene_id}.mp4")
        brief_scene = next(s for s in work.brief.scenes if s.scene_id == scene.scene_id)
        clips.append(SceneClip(scene_id=scene.scene_id, path=str(path), captions=scene.captions,
                               on_screen_text=brief_scene.on_screen_text.get(spec.locale),
                               render_id=scene.render_key, seed=scene.seed))
    size = TARGET_SIZES[spec.aspect]
    card = _end_card(services, work, size, workdir)
    result, measured = assemble_measured_spot(spec, clips, workdir / "spot", size=size,
                                              end_card=card,
                                              x264_preset=services.settings.finish_x264_preset)
    report = run_spot_qc(spec, result, workdir / "qc", measured)
    manifest = spot_manifest(spec, clips, result)
    params = {"qc": report.model_dump(mode="json"),
              "preview": any(s.preview for s in work.scenes), "size": list(size),
              "loudness": {"input_lufs": result.loudness_in_lufs,
                           "output_lufs": result.loudness_out_lufs,
                           "true_peak_dbtp": result.true_peak_out_dbtp},
              "spot": manifest.model_dump(mode="json")}
    return upload_finished(services, result, input_key, params)


def assemble_spot_deliverable(services: Services, spot_id: UUID) -> DeliverableStatus:
    """Assemble one pending spot whose scenes are finished; its new status (finished, failed
    by spot QC or a failed scene, or still pending while a scene is being made)."""
    work = _spot_work(services, spot_id)
    if not isinstance(work, _SpotWork):
        return work
    input_key = _spot_key(work, services.code_version, services.settings.finish_x264_preset)
    with session_scope(services.engine) as session:
        done = repo.find_artifact(session, "video", input_key) is not None
    with tempfile.TemporaryDirectory(prefix="mova-spot-") as tmp:
        uploaded = [] if done else _assemble(services, work, input_key, Path(tmp))
    with session_scope(services.engine) as session:
        row = repo.get_deliverable(session, spot_id)
        if row.status != DeliverableStatus.PENDING:
            return row.status
        parents = [a for s in work.scenes if (a := session.get(Artifact, s.video_id))]
        record_uploaded(services, session, uploaded, input_key, parents, "spot.assemble")
        video = repo.find_artifact(session, "video", input_key)
        assert video is not None
        report = QCReport.model_validate(video.params["qc"])
        repo.set_finished_video(row, video, {"report": report.model_dump(mode="json"),
                                             "loudness": video.params["loudness"],
                                             "preview": video.params["preview"]})
        if report.passed:
            repo.accept_deliverable(row)
        else:
            repo.fail_deliverable(row, "spot QC failed: " + "; ".join(report.failures))
        return row.status


@task(name="spot.assemble", retries=1, retry_delay_seconds=2,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def assemble_spot_task(services: Services, spot_id: UUID) -> str:
    return run_traced(services, "spot.assemble", spot_id, assemble_spot_deliverable)

"""Dubbing strategies and the QC gate, through the real task functions (SQLite, local storage,
the tiny model in-process instead of a Ray actor)."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
import yaml
from sqlalchemy import select

from infra.db import session_scope
from infra.db_models import Artifact, Deliverable, RenderJob
from infra.media import decode_video_frames
from infra.settings import load_settings
from schemas.brief import Aspect, LoudnessProfile, OnScreenText
from schemas.finishing import LOUDNESS_TARGETS, CaptionCue, FinishSpec
from schemas.plan import RenderSpec
from tasks.deliver import _finish_key
from tasks.ingest import plan_brief
from tasks.production import publishes_scenes
from tasks.render import (
    RenderResult,
    clip_to_npz,
    pending_payloads,
    read_clip,
    record_render,
)
from tasks.services import Services
from tasks.submission import submit_brief
from tests.example_brief import example_text
from tests.tasks.encoder_settings import encoded_with
from tests.tasks.in_process import finish_and_publish, render_all

EXAMPLE = example_text()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def _services(tmp_path: Path, checkpoint: Path, **environment: str) -> Services:
    return Services(load_settings({"MOVA_DATA_DIR": str(tmp_path),
                                   "MOVA_CHECKPOINT": str(checkpoint), **environment}))


def _produce(services: Services, brief_text: str) -> dict[str, Deliverable]:
    brief_id = submit_brief(services, brief_text)
    with session_scope(services.engine) as session:
        from infra.repository import claim_submitted_briefs

        claim_submitted_briefs(session, 1, "test")
    plan_brief(services, brief_id)
    render_all(services, brief_id)
    return _finish_all(services, brief_id)


def _finish_all(services: Services, brief_id: UUID) -> dict[str, Deliverable]:
    return {d.name: d for d in finish_and_publish(services, brief_id)}


def _clip_video(data_dir: Path, row: Deliverable) -> np.ndarray:
    """The model render behind a deliverable (before finishing)."""
    services = Services(load_settings({"MOVA_DATA_DIR": str(data_dir)}))
    with session_scope(services.engine) as session:
        job = session.scalars(select(RenderJob).where(RenderJob.spec_key == row.render_key)).one()
        key = str(job.clip.params["key"]) if job.clip else ""
    return read_clip(services.store, key).video


def _frames(row: Deliverable) -> np.ndarray:
    assert row.published_uri is not None
    return decode_video_frames(Path(row.published_uri.removeprefix("file://")))


@pytest.mark.slow
def test_voiceover_keeps_the_master_picture_and_lipsync_renders_each_language(
        tmp_path: Path, checkpoint: Path) -> None:
    # Without per-language on-screen text the picture has nothing language-specific left, so
    # the encoded video streams must match frame for frame. (With localized text drawn on the
    # picture the encoder's rate control spreads those pixel changes across the frame.)
    no_text = EXAMPLE[:EXAMPLE.index("    on_screen_text:")]
    voiceover = _produce(_services(tmp_path / "vo", checkpoint),
                         no_text.replace("dubbing: lipsync", "dubbing: voiceover"))
    assert {r.status for r in voiceover.values()} == {"published"}
    for aspect in ("16:9", "9:16"):
        en = voiceover[f"morning-run/en-US/{aspect}"]
        de = voiceover[f"morning-run/de-DE/{aspect}"]
        assert np.array_equal(_clip_video(tmp_path / "vo", en), _clip_video(tmp_path / "vo", de))
        assert np.array_equal(_frames(en), _frames(de)), "voice-over changed the picture"
    lipsync = _produce(_services(tmp_path / "ls", checkpoint), no_text)
    en, de = lipsync["morning-run/en-US/16:9"], lipsync["morning-run/de-DE/16:9"]
    assert not np.array_equal(_clip_video(tmp_path / "ls", en), _clip_video(tmp_path / "ls", de))
    assert not np.array_equal(_frames(en), _frames(de))


def test_a_broken_render_fails_qc_is_rerendered_with_the_next_seed_then_fails(
        tmp_path: Path, checkpoint: Path) -> None:
    services = _services(tmp_path, checkpoint)
    brief_text = EXAMPLE.replace('aspects: ["16:9", "9:16"]', 'aspects: ["16:9"]') \
        .replace("locales: [en-US, de-DE]", "locales: [en-US]")
    start = brief_text.index("      de-DE:\n        - speaker")
    brief_text = brief_text[:start] + brief_text[brief_text.index("    on_screen_text:"):]
    brief_text = brief_text.replace(
        "      de-DE: {brand_line: Aurora One, call_to_action: Heute loslaufen, "
        'price: "129 €"}\n', "")
    brief_id = submit_brief(services, brief_text)
    with session_scope(services.engine) as session:
        from infra.repository import claim_submitted_briefs

        claim_submitted_briefs(session, 1, "test")
    plan_brief(services, brief_id)

    def record_black_silent_render() -> RenderSpec:
        [payload] = pending_payloads(services, brief_id)
        spec = RenderSpec.model_validate(payload["spec"])
        video = np.zeros((spec.num_frames, spec.height, spec.width, 3), np.uint8)
        audio = np.zeros((1, 50_000), np.float32)
        data = clip_to_npz(video, audio, 24.0, 48_000, {"seed": spec.seed})
        stored = services.store.put_bytes(data, f"renders/broken-{spec.seed}.npz")
        record_render(services, brief_id, RenderResult(
            job_id=payload["job_id"], key=f"renders/broken-{spec.seed}.npz", uri=stored.uri,
            sha256=stored.sha256, size_bytes=stored.size_bytes, seconds=0.0, params={}))
        return spec

    first = record_black_silent_render()
    [row] = _finish_all(services, brief_id).values()
    assert row.status == "pending" and "black_picture" in (row.error or "")
    assert "silence" in (row.error or "")
    second = record_black_silent_render()  # the re-render the gate asked for
    assert second.seed == first.seed + 1
    [row] = _finish_all(services, brief_id).values()
    assert row.status == "failed" and row.error is not None
    assert row.error.startswith("QC failed: ") and "black_picture" in row.error
    with session_scope(services.engine) as session:
        assert len(list(session.scalars(select(RenderJob)))) == 2


@pytest.mark.slow
@pytest.mark.parametrize("publish_scenes", [False, True])
def test_a_scene_finish_has_a_burned_caption_variant_only_when_the_brief_publishes_scenes(
        tmp_path: Path, checkpoint: Path, publish_scenes: bool) -> None:
    """A scene finish that only feeds its spot skips the burned-in-captions encode (the spot
    burns captions over its own timeline); a brief that publishes its scenes as cut-downs
    gets both variants of each."""
    from tests.tasks.test_faults import one_variant_brief

    text = one_variant_brief() + f"publish_scenes: {str(publish_scenes).lower()}\n"
    services = _services(tmp_path, checkpoint, FINISH_X264_PRESET="veryfast")
    [scene] = _produce(services, text).values()
    assert scene.status == "published"  # (the helper publishes scene finishes)
    assert publishes_scenes(services, scene.brief_id) is publish_scenes
    with session_scope(services.engine) as session:
        made = sorted(a.kind for a in session.scalars(select(Artifact).where(
            Artifact.task == "finish.variant")))
    # what the spots are made from; a published scene has its cut-down beside it
    expected = ["captions_srt", "captions_vtt", "video"]
    assert made == sorted(expected * 2 + ["video_burned"] if publish_scenes else expected)
    # and only a published cut-down is encoded for delivery (720p-class H.264 High 4:2:0);
    # a finish that feeds its spot keeps the render's size, losslessly, for the spot to scale
    from infra.media import probe
    from schemas.brief import Aspect
    from schemas.finishing import TARGET_SIZES
    from tasks.finishing import crop_box

    with session_scope(services.engine) as session:
        video = session.get(Deliverable, scene.id).video
        path = services.store.local_path(str(video.params["key"]))
    media = probe(path).video
    render = _clip_video(tmp_path, scene)
    crop_w, crop_h, _, _ = crop_box(render.shape[2], render.shape[1], Aspect(scene.aspect))
    if publish_scenes:
        assert (media.width, media.height) == TARGET_SIZES[Aspect(scene.aspect)]
        assert (media.profile, media.pix_fmt) == ("High", "yuv420p")
        assert encoded_with(path, "veryfast")  # FINISH_X264_PRESET reached the encoder
        with session_scope(services.engine) as session:  # the spots' source, beside it
            source = session.get(Artifact, UUID(session.get(Deliverable, scene.id)
                                                .qc["spot_source"]))
            path = services.store.local_path(str(source.params["key"]))
        media = probe(path).video
    assert (media.width, media.height) == (crop_w, crop_h)
    assert (media.profile, media.pix_fmt) == ("High 4:4:4 Predictive", "yuv444p")
    assert encoded_with(path, "ultrafast")  # lossless, whatever the delivery preset


@pytest.mark.slow
def test_a_published_cut_down_carries_the_scene_s_on_screen_text_and_its_spot_draws_it_once(
        tmp_path: Path, checkpoint: Path) -> None:
    """Cut-downs were published without the brief's on-screen text (brand line, price, call
    to action): the scene finish fed the spots too, which draw the text on their own timeline.
    The cut-down now has it; the spot is made from the text-free finish, so a brief that
    publishes its scenes gives the same spot as one that does not."""
    from tasks.overlay import build_ass
    from tasks.spot_deliver import assemble_spot_deliverable
    from tasks.spot_qc import draw_text_layer
    from tests.tasks.test_faults import one_variant_brief

    spots, cut_downs = {}, {}
    for publish in (False, True):
        services = _services(tmp_path / str(publish), checkpoint)
        text = one_variant_brief() + f"publish_scenes: {str(publish).lower()}\n"
        [scene] = _produce(services, text).values()
        with session_scope(services.engine) as session:
            [spot] = session.scalars(select(Deliverable).where(
                Deliverable.brief_id == scene.brief_id, Deliverable.kind == "spot"))
        assert assemble_spot_deliverable(services, spot.id) == "finished"
        with session_scope(services.engine) as session:
            spots[publish] = session.get(Deliverable, spot.id).video.sha256
            cut_downs[publish] = services.store.local_path(
                str(session.get(Deliverable, scene.id).video.params["key"]))
    assert spots[True] == spots[False]  # the same sources: the text is drawn once, by the spot
    brief = yaml.safe_load(one_variant_brief())
    on_screen = OnScreenText.model_validate(brief["scenes"][0]["on_screen_text"]["en-US"])
    ass = tmp_path / "text.ass"
    ass.write_text(build_ass(width=1280, height=720, locale="en-US", duration_s=1.0,
                             captions=[], on_screen=on_screen))
    glyphs = draw_text_layer(ass, (1280, 720), 24.0, [0], tmp_path)[0, ..., 0] > 240
    assert glyphs.sum() > 500  # brand line, price and call to action: white fill
    first = decode_video_frames(cut_downs[True])[0].mean(axis=-1)
    assert first[glyphs].mean() > 220 > first.mean() + 60  # drawn on the cut-down's picture


ISSUE15_BRIEF = Path(__file__).resolve().parents[2] / "bench" / "briefs" / "issue15-2x4x3.yaml"


@pytest.mark.slow
@pytest.mark.parametrize("publish_scenes", [False, True])
def test_a_scene_with_nothing_said_is_finished_once_for_all_locales_unless_scenes_are_published(
        tmp_path: Path, checkpoint: Path, publish_scenes: bool) -> None:
    """The product shot says nothing: its one render feeds every locale's spot through one
    scene finish (the spots tag their own language); a brief that publishes its scenes gets a
    finish per locale, each tagged with its language. The scene with dialogue is finished per
    locale either way."""
    from infra.media import probe
    from tasks.deliver import finish_deliverable

    lines = [line for line in ISSUE15_BRIEF.read_text().splitlines()
             if not line.startswith(("      de-DE:", "      zh-CN:"))]
    text = "\n".join(lines).replace("locales: [en-US, de-DE, ar-SA, zh-CN]",
                                    "locales: [en-US, ar-SA]") \
        .replace('aspects: ["16:9", "9:16", "1:1"]', 'aspects: ["16:9"]')
    text += f"\npublish_scenes: {str(publish_scenes).lower()}\n"
    services = _services(tmp_path, checkpoint)
    brief_id = submit_brief(services, text)
    with session_scope(services.engine) as session:
        from infra.repository import claim_submitted_briefs

        claim_submitted_briefs(session, 1, "test")
    plan_brief(services, brief_id)
    render_all(services, brief_id)
    with session_scope(services.engine) as session:
        scenes = {(d.scene_id, d.locale): d.id for d in session.scalars(select(Deliverable).where(
            Deliverable.brief_id == brief_id, Deliverable.kind == "scene"))}
    assert len(scenes) == 4
    statuses = {key: finish_deliverable(services, row_id) for key, row_id in scenes.items()}
    assert set(statuses.values()) == {"finished"}, statuses
    with session_scope(services.engine) as session:
        videos = {key: session.get(Deliverable, row_id).video for key, row_id in scenes.items()}
        ids = {key: video.id for key, video in videos.items()}
        files = {key: services.store.local_path(str(video.params["key"]))
                 for key, video in videos.items()}
    languages = {key: probe(path).audio.language for key, path in files.items() if path}
    assert ids[("morning-run", "en-US")] != ids[("morning-run", "ar-SA")]
    assert (ids[("product-shot", "en-US")] == ids[("product-shot", "ar-SA")]) \
        is not publish_scenes
    assert languages[("morning-run", "en-US")] == "eng"
    assert languages[("morning-run", "ar-SA")] == "ara"
    shot_languages = {languages[("product-shot", "en-US")], languages[("product-shot", "ar-SA")]}
    assert shot_languages == ({"eng", "ara"} if publish_scenes else {"und"})


def test_finish_keys_made_before_the_preset_setting_still_name_their_files() -> None:
    # Every delivered file was veryfast before FINISH_X264_PRESET: a key made then (this one by
    # the code of 115144d) must still find its file, and another preset must not find it.
    spec = FinishSpec(aspect=Aspect.PORTRAIT, locale="de-DE",
                      loudness=LOUDNESS_TARGETS[LoudnessProfile.WEB],
                      captions=[CaptionCue(start_s=0.2, end_s=1.6, lines=["Hallo"])])
    before = "a60490bc046ed0878f3e8bc504923ec1ff1f1c94eef46fabcbf0d0e8a43fe197"
    assert _finish_key("ab" * 32, spec, "0.1.0+g123", "veryfast") == before
    assert _finish_key("ab" * 32, spec, "0.1.0+g123", "superfast") != before
    shared = FinishSpec(aspect=Aspect.SQUARE, locale="und", loudness=spec.loudness,
                        burned_variant=False, intermediate=True)
    assert len({_finish_key("ab" * 32, shared, "0.1.0", p)  # type: ignore[arg-type]
                for p in ("veryfast", "superfast", "slow")}) == 1  # its encoding is fixed


def test_finishing_threads_that_need_one_file_take_turns_and_leave_no_lock_behind() -> None:
    import threading

    from tasks import deliver

    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with deliver._finishing("file-a"):
            order.append("first in")
            inside.set()
            release.wait(10)
            order.append("first out")

    def second() -> None:
        with deliver._finishing("file-a"):
            order.append("second in")

    a = threading.Thread(target=first)
    a.start()
    assert inside.wait(10)
    b = threading.Thread(target=second)
    b.start()
    with deliver._finishing("file-b"):  # another file does not wait
        order.append("other file")
    b.join(0.2)
    assert b.is_alive()  # waiting for the first
    release.set()
    a.join(10)
    b.join(10)
    assert order == ["first in", "other file", "first out", "second in"]
    assert deliver._FINISH_LOCKS == {}


def test_a_finish_publish_or_plan_that_raises_ends_its_lineage_run_in_fail(
        tmp_path: Path) -> None:
    """A finish, spot assembly, publish or plan that raised left its OpenLineage run started
    for good, and a publish sent COMPLETE without a START; now each run is START then
    COMPLETE or FAIL, the FAIL with a readable reason."""
    import json
    from uuid import uuid4

    from infra.lineage_events import EVENTS_FILE
    from tasks.deliver import publish_task, run_traced
    from tasks.ingest import plan_brief_task

    def broken(services: Services, deliverable_id: UUID) -> str:
        raise RuntimeError(f"ffmpeg exited 1 on {tmp_path}/scene.mp4")

    with Services(load_settings({"MOVA_DATA_DIR": str(tmp_path)})) as services:
        with pytest.raises(RuntimeError):
            run_traced(services, "finish.variant", uuid4(), broken)
        with pytest.raises(Exception, match="deliverable"):
            publish_task.fn(services, uuid4())  # no such deliverable
        with pytest.raises(Exception):  # noqa: B017 - whichever error: the run must end
            plan_brief_task.fn(services, uuid4())  # no such brief
        lines = (services.settings.lineage_dir / EVENTS_FILE).read_text().splitlines()
    events = [json.loads(line) for line in lines]
    runs: dict[str, list[str]] = {}
    for event in events:
        runs.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert list(runs.values()) == [["START", "FAIL"]] * 3
    jobs = [e["job"]["name"] for e in events]
    assert jobs == ["finish.variant"] * 2 + ["publish.deliverable"] * 2 + ["plan.variants"] * 2
    assert events[1]["run"]["facets"]["errorMessage"]["message"] == "ffmpeg exited 1 on scene.mp4"


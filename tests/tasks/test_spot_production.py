"""Finished spots through the real task functions (SQLite, local storage): a two-scene,
four-language brief (Latin, Arabic and Chinese scripts) becomes one spot per locale x aspect,
each playable end to end with its end card, captions over the whole spot, one loudness and
text inside the 9:16 safe zone. The renders are synthetic clips (a moving pattern and a
speech-like tone) stored as the render worker stores them: this is about the spot, not the
model (tests/flows/test_production_e2e.py runs the model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import pytest
import yaml
from sqlalchemy import select

from infra.db import session_scope
from infra.db_models import Deliverable, DeliverableKind
from infra.hashing import sha256_bytes
from infra.media import decode_audio, decode_video_frames, probe
from infra.repository import claim_submitted_briefs, render_job
from infra.settings import load_settings
from infra.statuses import DeliverableStatus
from schemas.brief import load_brief
from schemas.errors import BriefInvalid, RequestInvalid
from schemas.plan import RenderSpec
from schemas.platforms import deliverable_name, safe_zone
from tasks.end_card import hex_rgb
from tasks.ingest import plan_brief
from tasks.qc import integrated_lufs
from tasks.render import (
    RenderPayload,
    RenderResult,
    clip_key,
    clip_to_npz,
    pending_payloads,
    record_render,
)
from tasks.review import reject
from tasks.services import Services
from tasks.submission import submit_brief
from tests.tasks.encoder_settings import encoded_with
from tests.tasks.in_process import finish_and_publish
from tests.tasks.spot_fixtures import (
    BRAND_BACKGROUND,
    FOUR_MARKET_CROSSFADE_S,
    FOUR_MARKET_END_CARD_S,
    FOUR_MARKET_SCENE_S,
    LINES,
    LOCALES,
    four_market_brief_text,
)

pytestmark = pytest.mark.slow
LOGO = Path(__file__).resolve().parents[2] / "examples" / "logo.png"
SCENE_S, CROSSFADE_S = FOUR_MARKET_SCENE_S, FOUR_MARKET_CROSSFADE_S
END_CARD_S, BACKGROUND = FOUR_MARKET_END_CARD_S, BRAND_BACKGROUND


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Planning fingerprints the model folder; nothing here runs the model."""
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def _synthetic_render(services: Services, payload: dict[str, Any]) -> RenderResult:
    """What a render worker stores for `payload`: frames at the request's size and length, a
    tone swelling at 3 Hz (speech for the caption timer) at -20 dBFS or so; picture and pitch
    follow the request's seed, as a model's output does."""
    request = RenderPayload.model_validate(payload)
    spec = request.spec
    index = spec.seed % 7
    frames, height, width = spec.num_frames, spec.height, spec.width
    t = np.arange(frames)[:, None, None]
    x = np.arange(width)[None, None, :]
    y = np.arange(height)[None, :, None]
    video = np.stack([(x * 4 + t * 5) % 256 + 0 * y, (y * 4 + index * 40) % 256 + 0 * x * t,
                      (t * 9 + 0 * x + 0 * y) % 256], axis=-1).astype(np.uint8)
    rate = 48_000
    n = round(frames / 24 * rate)
    s = np.arange(n) / rate
    audio = (0.1 * np.sin(2 * np.pi * (200 + 30 * index) * s)
             * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * s)))[None, :].astype(np.float32)
    data = clip_to_npz(video, audio, 24.0, rate, {"synthetic": True})
    sha = sha256_bytes(data)
    stored = services.store.put_bytes(data, clip_key(sha))
    return RenderResult(job_id=request.job_id, key=clip_key(sha), uri=stored.uri, sha256=sha,
                        size_bytes=stored.size_bytes, seconds=0.5, params={"synthetic": True})


def _produce(services: Services, folder: Path, text: str | None = None) -> UUID:
    brief_id = submit_brief(services, text or four_market_brief_text(), base_dir=folder)
    with session_scope(services.engine) as session:
        claim_submitted_briefs(session, 1, "test")
    plan_brief(services, brief_id)
    _render_and_finish(services, brief_id)
    return brief_id


def _render_and_finish(services: Services, brief_id: UUID) -> None:
    while payloads := pending_payloads(services, brief_id):
        for payload in payloads:
            record_render(services, brief_id, _synthetic_render(services, payload))
    finish_and_publish(services, brief_id, scenes=False, spots=True)  # scenes: intermediates


def test_a_two_scene_four_language_brief_yields_one_finished_spot_per_locale_and_aspect(
        tmp_path: Path, checkpoint: Path) -> None:
    folder = tmp_path / "brief"
    folder.mkdir()
    shutil.copy(LOGO, folder / "logo.png")
    services = Services(load_settings({"MOVA_DATA_DIR": str(tmp_path / "data"),
                                       "MOVA_CHECKPOINT": str(checkpoint),
                                       "FINISH_X264_PRESET": "veryfast"}))
    with services:
        brief_id = _produce(services, folder)
        with session_scope(services.engine) as session:
            rows = list(session.scalars(select(Deliverable).where(
                Deliverable.brief_id == brief_id)))
            spots = [r for r in rows if r.kind == DeliverableKind.SPOT]
            scenes = [r for r in rows if r.kind == DeliverableKind.SCENE]
            assert sorted((r.locale, r.aspect) for r in spots) == sorted(
                (loc, "9:16") for loc in LOCALES)
            assert all(r.status == DeliverableStatus.PUBLISHED for r in spots), \
                [(r.name, r.status, r.error) for r in spots]
            assert len(scenes) == 8 and all(r.status == DeliverableStatus.FINISHED
                                            for r in scenes)
            published = {r.locale: (r.published_uri, r.manifest_uri) for r in spots}
    brief = load_brief(four_market_brief_text())
    zone = safe_zone(brief.platforms, brief.aspects[0])
    campaign = tmp_path / "data" / "storage" / "campaigns" / "_local" / "aurora-four-markets"
    expected_s = 2 * SCENE_S - CROSSFADE_S + END_CARD_S
    for locale in LOCALES:
        video_uri, manifest_uri = published[locale]
        path = Path(str(video_uri).removeprefix("file://"))
        # where the spot lands, named for its first platform
        assert path == campaign / locale / "9x16" / deliverable_name(
            "aurora-four-markets", locale, brief.aspects[0], brief.platforms[0])
        media = probe(path)
        assert encoded_with(path, "veryfast")  # FINISH_X264_PRESET reached the spot's encode
        assert media.duration_s == pytest.approx(expected_s, abs=1.5 / 24)
        frames = decode_video_frames(path)
        assert len(frames) == round(expected_s * 24)
        assert frames.shape[1:3] == (1280, 720)
        # the end card: the brand background on the last frame, outside the logo and text
        corner = frames[-1][5:60, 5:60].reshape(-1, 3).mean(axis=0)
        assert np.abs(corner - np.array(hex_rgb(BACKGROUND))).max() < 12
        # one loudness over the whole spot
        samples, rate = decode_audio(path)
        loudness = integrated_lufs(samples, rate)
        assert loudness is not None and abs(loudness - (-14.0)) <= 1.0
        # captions over the whole spot: the second scene's line is timed after its start
        vtt = path.with_suffix(".vtt").read_text(encoding="utf-8")
        assert LINES[locale][0] in vtt and LINES[locale][1] in vtt
        manifest = json.loads(Path(str(manifest_uri).removeprefix("file://")).read_text())
        second_start = manifest["spot"]["scenes"][1]["start_s"]
        assert second_start == pytest.approx(SCENE_S - CROSSFADE_S, abs=1 / 24)
        cue_starts = [float(line.split(" --> ")[0].split(":")[-1]) for line in vtt.splitlines()
                      if " --> " in line]
        assert any(start >= second_start for start in cue_starts)
        # the manifest lists scenes, renders, seeds and GPU-seconds
        assert [s["scene_id"] for s in manifest["spot"]["scenes"]] == ["open", "stride"]
        assert all(s["render_id"] and s["seed"] is not None and s["gpu_seconds"] == 0.5
                   for s in manifest["spot"]["scenes"])
        assert manifest["gpu_seconds"] == 1.0
        # captions and on-screen text inside the 9:16 safe zone, checked on rendered frames
        checks = {c["name"]: c for c in manifest["qc"]["checks"]}
        for name in ("captions_safe_zone", "text_safe_zone", "joins", "true_peak",
                     "platform_duration"):
            assert checks[name]["passed"], checks[name]
        assert str(zone.box(720, 1280)) in checks["captions_safe_zone"]["expected"]


def test_a_brief_whose_spot_no_platform_limit_fits_is_refused_at_submission(
        tmp_path: Path) -> None:
    text = yaml.safe_load(four_market_brief_text())
    text["platforms"] = ["tiktok"]  # 5-60 s: a 1.75 s spot does not fit
    text["brand_kit"]["end_card_s"] = 1.0
    text["scenes"] = text["scenes"][:1]
    services = Services(load_settings({"MOVA_DATA_DIR": str(tmp_path)}))
    with services, pytest.raises(BriefInvalid) as err:
        submit_brief(services, yaml.safe_dump(text, allow_unicode=True), base_dir=tmp_path)
    assert any(path == "platforms[0]" and "tiktok takes spots of 5-60 s" in message
               for path, message in err.value.problems), err.value.problems
    with services, session_scope(services.engine) as session:
        assert session.scalars(select(Deliverable)).first() is None


def test_rejecting_one_scene_of_a_spot_rerenders_it_and_its_chain_and_reassembles_that_spot(
        tmp_path: Path, checkpoint: Path) -> None:
    folder = tmp_path / "brief"
    folder.mkdir()
    shutil.copy(LOGO, folder / "logo.png")
    data = yaml.safe_load(four_market_brief_text(locales=["en-US", "ar-SA"],
                                                 requires_approval=True))
    for scene in data["scenes"]:
        scene["dialogue"] = {k: v for k, v in scene["dialogue"].items() if k in data["locales"]}
        scene["on_screen_text"] = {k: v for k, v in scene.get("on_screen_text", {}).items()
                                   if k in data["locales"]}
    data["scenes"][1]["continue_from"] = "open"  # stride starts from open's last frame
    for field in ("legal", "call_to_action"):
        data["brand_kit"][field] = {k: data["brand_kit"][field][k] for k in data["locales"]}
    services = Services(load_settings({"MOVA_DATA_DIR": str(tmp_path / "data"),
                                       "MOVA_CHECKPOINT": str(checkpoint)}))

    def state() -> dict[str, tuple[str, int, str | None, str | None]]:
        """name -> (status, render seed or -1, video id, render key) of every row."""
        with session_scope(services.engine) as session:
            out = {}
            for row in session.scalars(select(Deliverable).where(
                    Deliverable.brief_id == brief_id)):
                seed = -1
                if row.kind == DeliverableKind.SCENE:
                    seed = RenderSpec.model_validate(
                        render_job(session, row.render_key).spec).seed
                out[row.name] = (str(row.status), seed, str(row.video_artifact_id),
                                 row.render_key)
            return out

    with services:
        brief_id = _produce(services, folder, yaml.safe_dump(data, allow_unicode=True))
        before = state()
        assert {before[n][0] for n in before if "LUFS" in n} == {"in_review"}, before
        with session_scope(services.engine) as session:
            spot = session.scalars(select(Deliverable).where(
                Deliverable.brief_id == brief_id,
                Deliverable.name == "ar-SA/9x16/-14LUFS")).one()
        # a scene that is not in the spot is refused; nothing changes
        with pytest.raises(RequestInvalid, match=r"scene_id: spot ar-SA/9x16/-14LUFS has no "
                                                 r"scene 'missing' \(its scenes: open, stride\)"):
            reject(services, spot.id, team="_local", reviewer="ana", comment="no",
                   rerender=True, scene_id="missing")
        assert state() == before
        assert reject(services, spot.id, team="_local", reviewer="ana",
                      comment="the first shot is too dark", rerender=True,
                      scene_id="open") == DeliverableStatus.PENDING
        after = state()
        changed = sorted(n for n in after if after[n] != before[n])
        # open and the scene chained after it, in that spot's language and format only
        assert changed == ["ar-SA/9x16/-14LUFS", "open/ar-SA/9:16", "stride/ar-SA/9:16"]
        opened, stride = after["open/ar-SA/9:16"], after["stride/ar-SA/9:16"]
        assert opened[:2] == ("pending", before["open/ar-SA/9:16"][1] + 1)  # the next seed
        # the chained scene keeps its seed and renders again from open's new last frame
        assert stride[:2] == ("pending", before["stride/ar-SA/9:16"][1])
        assert stride[3] != before["stride/ar-SA/9:16"][3]
        with session_scope(services.engine) as session:
            assert render_job(session, stride[3]).spec["continue_from"] == opened[3]
        _render_and_finish(services, brief_id)
        final = state()
        assert final["ar-SA/9x16/-14LUFS"][0] == "in_review"
        assert final["ar-SA/9x16/-14LUFS"][2] != before["ar-SA/9x16/-14LUFS"][2]  # new file
        assert final["en-US/9x16/-14LUFS"] == before["en-US/9x16/-14LUFS"]

"""The demo model (assets/demo-model: the tiny MOVA trained here on the synthetic world by
`make demo-model`, issue 17): an official folder that names itself, content the analysers can
measure held above floors, the demo brief's scenes, and the continuity of chained scenes proved
on its pixels (issue 13).

The floors are what this model measured, less a margin: they catch a broken pipeline or a
damaged folder, not a model that falls short of issue 17's targets (it still does). Measured by
`bench/content.py` on the whole fixed set (24 scenes x 2 seeds, 20 steps, cfg 3; video VAE of
width 12 trained on windows, whole clips, then its decoder alone; video experts of 4 blocks;
lip sync read from the mouth's ink with a correlation floor, 2026-12-04): background 1.00,
colour 0.81, object 0.75, lip sync 0.04, syllables 0.63, bounce clicks 0.17, voice-over lip sync
0.21, voice-over syllables 0.38, first frame 23.8 dB; its codecs alone (`--codecs`) reach
background 1.00, colour 1.00, object 0.83, lip sync 0.92, syllables 0.83, first frame 24.5 dB.
(The same model before its decoder phase: colour 0.73, lip sync 0.00, bounce clicks 0.25, first
frame 23.3 dB, the rest the same; its codecs: colour 0.92, lip sync 0.75, first frame 23.8 dB.)
Since 2026-12-05 its decoder has 1000 more steps (training.refine_decoder, every other weight
the same): colour 0.83, object 0.77, lip sync 0.13, first frame 24.1 dB, the rest as above; its
codecs: object 0.79, lip sync 0.83, first frame 24.9 dB (bench/README.md, more decoder
steps). Since 2026-12-05 (night) 3000 more, with the mouth and the first frame weighted in the
loss: colour 0.85, object 0.77, lip sync 0.21, first frame 25.1 dB, the rest as above; its
codecs: object 0.88, lip sync 1.00, first frame 26.6 dB. (Those object rates were read by how
much of its bounding box the object fills; read by its outline since 2026-12-07, the
committed model at the demo profile: 0.96, its codecs 1.00; bench/README.md.) Since 2026-12-07
(evening) its diffusion has 8000 voice-led steps and 2000 plain ones more, the codecs kept bit
for bit: at the demo profile colour 0.94, object 0.98, lip sync 0.29, syllables 0.75, first
frame 25.95 dB (bench/README.md, a plain phase after the voice-led one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.content import codec_ceiling, run
from demo_world import analysers
from demo_world.analysers import psnr
from infra import repository as repo
from infra.db import session_scope
from infra.settings import load_settings
from mova_model.pipeline import MovaPipeline
from schemas.plan import RENDER_PROFILES
from tasks.ingest import plan_brief
from tasks.render import read_clip
from tasks.services import Services
from tasks.submission import submit_brief
from tests.tasks.in_process import render_all
from tests.tasks.test_render_chain import _brief, _planned, _render_key

DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo-model"
DEMO = RENDER_PROFILES["demo"]


def test_the_demo_model_is_an_official_folder_that_names_itself() -> None:
    pipe = MovaPipeline.from_pretrained(DEMO_MODEL)  # strict: every tensor, no extras
    assert pipe.model_name == "demo model"
    size = sum(p.stat().st_size for p in DEMO_MODEL.rglob("*") if p.is_file())
    assert size < 20 * 2**20


@pytest.mark.slow
def test_the_codecs_keep_what_the_prompts_name() -> None:
    """The ceiling a generation can reach: the ground truth through the video VAE and the DAC
    still reads right. Measured on these 8: background 8, colour 8, object 8 of 8 (7 read by
    the filled fraction of its bounding box, before the outline reading), syllables 4 of 4,
    lip sync 4 of 4, first frame 27.6 dB (27.1 before the 1000 object-weighted decoder
    steps; before the 3000 mouth- and first-frame-
    weighted decoder steps: lip sync 3 of 4, 25.5 dB; 25.1 before the 1000 more decoder steps;
    before the decoder phase: colour 7, lip sync 2 of 4, 24.2 dB; the model before, whose
    video VAE had seen 9-frame windows only, decoded frames 9-24 of a clip at 12-15 dB)."""
    result = codec_ceiling(DEMO_MODEL, num_scenes=8)
    rates = result["rates"]
    assert rates["background"] >= 0.875 and rates["syllables"] >= 0.75, rates
    assert rates["colour"] >= 0.875 and rates["object"] >= 0.875, rates
    assert rates["lip_sync"] >= 0.75, rates  # the mouth survives the codecs, in time
    assert result["first_frame_psnr_db"] >= 27.0, result


@pytest.mark.slow
def test_content_stays_above_the_floors_on_the_fixed_evaluation_set() -> None:
    result = run(DEMO_MODEL, num_scenes=8, seeds=[0], steps=DEMO.steps, cfg_scale=DEMO.cfg_scale,
                 audio_cfg_scale=DEMO.audio_cfg_scale)  # the demo profile
    rates = result["rates"]
    # measured on these 8 at the demo profile (cfg 3.5, the sound's 1.5) since the voice-led
    # and plain continuations (2026-12-07, evening): background 8 of 8, object 7 of 8, colour
    # 8 of 8, first frame 26.83 dB, syllables 3 of 4, bounce clicks 2 of 2, voice-over
    # syllables 3 of 4, lip sync 1 of 4. Before them: object 8 of 8 (6 before the object was
    # read by its outline, 2026-12-07), colour 8 of 8, first frame 26.66 dB, syllables 4 of
    # 4, bounce clicks 2 of 2, voice-over syllables 3 of 4, lip sync 0 of 4.
    # At one scale of 3 (before them): colour 7 of 8, first frame
    # 26.8 dB (26.1 before the 8000 more diffusion steps and 1000 object-weighted decoder
    # steps, 24.6 before the 3000 mouth- and first-frame-weighted decoder steps, 24.2
    # before the 1000 more before them; before the decoder phase: colour 6, 23.7 dB; the
    # model before it 5 and 4, 21.3)
    assert rates["background"] >= 0.75 and rates["object"] >= 0.75, rates
    assert rates["colour"] >= 0.75, rates
    assert result["first_frame_psnr_db"] >= 26.0, result
    # sound (at one scale of 3, before the voice-led and plain continuations): syllables 3 of
    # 4, bounce clicks 2 of 2, voice-over syllables 3 of 4 (before the 8000 more diffusion
    # steps: 3, 1 and 2); no floor for lip sync: the voice this model makes for a given mouth
    # mostly comes at other times (0 of 4 here, 10 of 24 on the whole set at the demo
    # profile; joint lip sync 1 of 4 here, 7 of 24 there)
    assert rates["syllables"] >= 0.5 and rates["bounce_click"] >= 0.5, rates
    assert rates["voice_over_syllables"] >= 0.25, rates


@pytest.mark.slow
def test_a_chained_scene_starts_from_the_last_frame_of_the_scene_it_continues(
        tmp_path: Path) -> None:
    """Through the real tasks (plan, render, record) at the demo profile: `hero` continues
    `intro`; its first rendered frame is closer to intro's last one than the first frame of
    `outro`, which renders from text alone. (How close is the model's fidelity, issue 17's
    25 dB target; that the frame reaches the model bit for bit is
    tests/tasks/test_render_chain.py.)"""
    services, brief_id = _planned(tmp_path, DEMO_MODEL, _brief(["en-US"], ["16:9"]),
                                  profile="demo")
    render_all(services, brief_id)
    keys = {name: _render_key(services, brief_id, f"{name}/en-US/16:9")
            for name in ("intro", "hero", "outro")}
    with session_scope(services.engine) as session:
        jobs = repo.render_jobs(session, list(keys.values()))
        clips = {name: read_clip(services.store, str(jobs[key].clip.params["key"])).video
                 for name, key in keys.items()}
    last = np.ascontiguousarray(clips["intro"][-1])
    chained, unchained = psnr(clips["hero"][0], last), psnr(clips["outro"][0], last)
    print(f"\nPSNR to intro's last frame: hero (chained) {chained:.1f} dB, "  # noqa: T201 - figures for the closing note
          f"outro (text only) {unchained:.1f} dB")
    # measured: 26.1 dB chained, 11.7 dB from text (23.4 / 10.9 before the voice-led and plain
    # continuations of 2026-12-07, 24.5 / 10.5 before the 8000 more diffusion
    # steps and 1000 object-weighted decoder steps, 23.9 / 11.2 before the 3000 mouth- and
    # first-frame-weighted decoder steps, 24.6 / 11.3 before the 1000 more decoder steps;
    # earlier models 17.7 / 12.7, 12.4 / 9.4
    # and, with a DAC that decoded near silence, 19.9 / 10.3)
    assert chained >= 20.0 and chained >= unchained + 8.0, (chained, unchained)


DEMO_BRIEF = Path(__file__).resolve().parents[2] / "examples" / "demo-brief.yaml"


@pytest.mark.slow
def test_the_demo_brief_renders_the_scenes_it_describes(tmp_path: Path) -> None:
    """What `make demo` renders, through the real tasks at the demo profile: each scene's
    landscape renders (every language) show the background its prompt names, and the object:
    the greeting scene a face, the sliding one a box. (Through this model's video VAE a box's
    corners come out rounded and its dark label in the background's colour; read by how much
    of its bounding box it filled, before 2026-12-07, it was a face. Measured: box-slides
    grey/box, face-greets green/face.)"""
    services = Services(load_settings({"MOVA_DATA_DIR": str(tmp_path),
                                       "MOVA_CHECKPOINT": str(DEMO_MODEL),
                                       "MOVA_RENDER_PROFILE": "demo"}))
    # with its logo, read beside the brief as `mova-ads demo` submits it
    brief_id = submit_brief(services, DEMO_BRIEF.read_text(encoding="utf-8"),
                            base_dir=DEMO_BRIEF.parent)
    with session_scope(services.engine) as session:
        repo.claim_submitted_briefs(session, 1, "test")
    plan_brief(services, brief_id)
    render_all(services, brief_id)
    backgrounds = {"face-greets": "green", "box-slides": "grey"}
    seen: dict[str, list[tuple[str, str | None]]] = {}
    with session_scope(services.engine) as session:
        rows = [row for row in repo.get_brief(session, brief_id).deliverables
                if row.aspect == "16:9" and row.scene_id]
        jobs = repo.render_jobs(session, [row.render_key for row in rows])
        for row in rows:
            video = read_clip(services.store, str(jobs[row.render_key].clip.params["key"])).video
            seen.setdefault(row.scene_id, []).append(
                (analysers.read_background(video), analysers.read_object(video)))
    print(f"\ndemo brief renders (background, object): {seen}")  # noqa: T201 - for the note
    assert set(seen) == set(backgrounds)
    for scene_id, reads in seen.items():
        assert all(background == backgrounds[scene_id] for background, _ in reads), seen
    assert all(obj == "face" for _, obj in seen["face-greets"]), seen
    assert all(obj == "box" for _, obj in seen["box-slides"]), seen


def test_the_demo_models_dac_carries_the_worlds_speech() -> None:
    """decode(encode(x)) of held-out speaking clips keeps the syllables the analysers count,
    at about the input's level: a diffusion model can only be as audible as its codec. (The
    DAC before this one decoded at RMS 0.002 for 0.105 in and kept 0 of 13 counts.)"""
    from demo_world.world import render_many
    from mova_model.audio_vae import AudioVAE
    from mova_model.checkpoint import load_component
    from mova_model.config import AudioVAEConfig

    dac, _ = load_component(DEMO_MODEL / "audio_vae", AudioVAEConfig, AudioVAE)
    faces = [clip for clip in render_many(7, 40) if clip.scene.obj == "face"]
    right, levels = 0, []
    for clip in faces:
        with torch.no_grad():
            wave = torch.from_numpy(clip.audio)[None, None].float()
            heard = dac.decode(dac.encode(wave))[0, 0].numpy()[: clip.audio.shape[0]]
        right += analysers.count_syllables(heard) == clip.scene.num_syllables
        levels.append(float(heard.std() / clip.audio.std()))
    assert right >= 0.8 * len(faces), f"{right} of {len(faces)} syllable counts kept"
    assert 0.7 <= float(np.median(levels)) <= 1.4, levels

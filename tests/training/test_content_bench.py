"""bench/content.py: the fixed evaluation set and one pass of every metric through the pipeline."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.bridge_timing import main as bridge_timing_main
from bench.content import _lip_signals, evaluation_scenes, lip_sync_diagnosis, main, run
from demo_world.world import SAMPLES_PER_FRAME, Scene, prompt_for, render
from mova_model.make_checkpoint import make_checkpoint
from mova_model.request import GuidanceMode

DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo-model"


def test_evaluation_set_is_fixed_and_balanced() -> None:
    scenes = evaluation_scenes(24)
    assert scenes == evaluation_scenes(24)  # same scenes, seeds included, every time
    kinds = Counter(s.obj for s in scenes)
    assert kinds == {"face": 12, "ball": 6, "box": 6}
    for attribute in ("colour", "background"):
        counts = Counter(getattr(s, attribute) for s in scenes)
        assert len(counts) == 3 and max(counts.values()) - min(counts.values()) <= 2
    faces = [s for s in scenes if s.obj == "face"]
    assert {s.num_syllables for s in faces} == {1, 2, 3}
    assert {s.syllable for s in faces} == {"ba", "bo", "bi"}
    assert len({prompt_for(s) for s in scenes}) >= 20


@pytest.mark.slow
def test_every_metric_is_measured_through_the_pipeline(tmp_path: Path) -> None:
    folder = make_checkpoint(tmp_path / "tiny", preset="tiny", seed=0)
    result = run(folder, num_scenes=2, seeds=[0], steps=1, cfg_scale=2.0)
    # scene 0 is a face, scene 1 a ball: every metric gets at least one sample
    assert result["counts"] == {"colour": 2, "object": 2, "background": 2, "lip_sync": 1,
                                "syllables": 1, "bounce_click": 1, "voice_over_lip_sync": 1,
                                "voice_over_syllables": 1}
    assert set(result["met"]) == {"colour", "object", "background", "lip_sync", "syllables",
                                  "first_frame_psnr_db", "voice_over"}
    # random weights: the first frame is not kept (PSNR far below the 25 dB target)
    assert result["first_frame_psnr_db"] < 25 and not result["met"]["first_frame_psnr_db"]


def test_the_lip_signals_of_a_speaking_clip_and_of_one_whose_voice_comes_late() -> None:
    truth = render(Scene("face", "red", "blue", "still", "ba", 2, seed=3))
    in_sync = _lip_signals(truth.frames, truth.audio)
    assert in_sync["correlated"] == 1 and in_sync["best_lag_within_a_frame"] == 1
    assert in_sync["mouth_opening_std"] > 10  # a drawn mouth opens and closes
    # the same soundtrack four frames later (silence before it): the mouth leads by 4
    late = np.concatenate([np.zeros(round(4 * SAMPLES_PER_FRAME), dtype=np.float32),
                           truth.audio])[:truth.audio.shape[0]]
    assert _lip_signals(truth.frames, late)["best_lag_within_a_frame"] == 0
    still_mouth = np.repeat(truth.frames[:1], truth.frames.shape[0], axis=0)
    assert _lip_signals(still_mouth, truth.audio) == {
        "mouth_opening_std": 0.0, "voice_peak_late": in_sync["voice_peak_late"],
        "correlated": 0.0, "best_lag_within_a_frame": 0.0}


@pytest.mark.slow
def test_the_lip_diagnosis_covers_every_speaking_generation_and_its_ground_truth(
        tmp_path: Path) -> None:
    folder = make_checkpoint(tmp_path / "tiny", preset="tiny", seed=0)
    result = lip_sync_diagnosis(folder, num_scenes=3, seeds=[0, 1], steps=1, cfg_scale=2.0)
    assert result["speaking_clips"] == 4  # scenes 0 and 2 are faces, two seeds each
    assert result["ground_truth"]["correlated"] == 1.0
    assert result["ground_truth"]["best_lag_within_a_frame"] == 1.0
    assert set(result["generated"]) == set(result["ground_truth"]) == \
        set(result["through_codecs"])
    # per frame, where the voice and the mouth fall: in the ground truth the mouth opens with
    # the voice, so their mean profiles rise and fall together
    profiles = result["profiles"]
    assert set(profiles) == {"generated", "ground_truth", "through_codecs"}
    assert all(len(p[k]) == 25 for p in profiles.values() for k in ("voice", "mouth"))
    truth = profiles["ground_truth"]
    assert max(truth["voice"]) <= 1.0
    assert np.corrcoef(truth["voice"], truth["mouth"])[0, 1] > 0.8, truth
    with pytest.raises(ValueError, match="no speaking scene"):
        lip_sync_diagnosis(folder, num_scenes=0, seeds=[0], steps=1, cfg_scale=2.0)


@pytest.mark.slow
def test_the_lip_diagnosis_reads_what_the_codecs_leave_of_the_mouth() -> None:
    """The demo model's video VAE draws the mouth's opening at about half its drawn amplitude,
    in time: the most a generation's mouth can move (measured on these 4 speaking scenes: 12.5
    against 21.7, all 4 correlated at 0.5 or more, every best lag within a frame; on the 12 of
    the whole set 12.9 against 23.5 one refinement before this one. The decoder before its
    mouth-weighted steps: 7.1, 3 of 4 correlated, 9.5 on the whole set; before any refinement
    7.7 and 10.4). A decoder cannot
    draw more mouth than the world does, nor can a generation read as moving when its codecs
    erase the mouth."""
    result = lip_sync_diagnosis(DEMO_MODEL, num_scenes=8, seeds=[0], steps=1, cfg_scale=3.0)
    truth, codecs = result["ground_truth"], result["through_codecs"]
    assert 0.2 * truth["mouth_opening_std"] < codecs["mouth_opening_std"] \
        < 0.8 * truth["mouth_opening_std"], result
    assert codecs["correlated"] >= 0.75 and codecs["best_lag_within_a_frame"] >= 0.75, result


@pytest.mark.parametrize(("extra", "message"), [
    (["--codecs", "--lip-diagnosis"], "give one of --codecs, --lip-diagnosis"),
    (["--bridge-scale", "2"], "--bridge-scale acts in --guidance dual only"),
    (["--guidance", "dual", "--bridge-scale", "-1"], "--bridge-scale -1.0: must be a number"),
    (["--guidance", "dual", "--bridge-scale", "nan"], "--bridge-scale nan: must be a number"),
    (["--codecs", "--guidance", "dual"], "--codecs runs no diffusion"),
    (["--guidance", "triple"], "invalid choice: 'triple'"),
    (["--steps", "0"], "--scenes and --steps must be positive"),
])
def test_bad_bench_arguments_are_refused_before_any_work(
        capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(DEMO_MODEL), *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("bench", [main, bridge_timing_main])
def test_a_folder_that_is_no_checkpoint_is_refused_by_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], bench: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench(["--checkpoint", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert f"--checkpoint {tmp_path / 'nowhere'}: not a MOVA checkpoint folder" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_dual_guidance_reaches_the_pipeline_and_the_result_says_so(tmp_path: Path) -> None:
    folder = make_checkpoint(tmp_path / "tiny", preset="tiny", seed=0)
    common = dict(num_scenes=1, seeds=[0], steps=2, cfg_scale=2.0)
    reference = lip_sync_diagnosis(folder, **common)  # type: ignore[arg-type]
    dual = lip_sync_diagnosis(folder, **common, guidance=GuidanceMode.DUAL,  # type: ignore[arg-type]
                              bridge_scale=3.0)
    assert reference["guidance"] == "reference" and "bridge_scale" not in reference
    assert dual["guidance"] == "dual" and dual["bridge_scale"] == 3.0
    assert dual["generated"] != reference["generated"]  # another sampling, another clip

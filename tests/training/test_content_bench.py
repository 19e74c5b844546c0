"""bench/content.py: the fixed evaluation set and one pass of every metric through the pipeline."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.content import evaluation_scenes, run
from demo_world.world import prompt_for
from mova_model.make_checkpoint import make_checkpoint


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

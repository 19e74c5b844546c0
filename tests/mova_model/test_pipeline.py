"""MovaPipeline on a tiny checkpoint in the official layout: from a prompt to a playable mp4."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mova_model.checkpoint import load_component
from mova_model.config import VideoDiTConfig
from mova_model.errors import CheckpointError, GenerationCancelled, InvalidRequest
from mova_model.generate import main as generate_main
from mova_model.generate import write_mp4
from mova_model.make_checkpoint import make_checkpoint
from mova_model.pipeline import COMPONENT_CLASSES, MovaPipeline
from mova_model.video_dit import VideoDiT

PROMPT = 'A barista smiles at the camera. She says: "Fresh coffee, every morning."'
SMALL = dict(height=32, width=48, num_frames=9, video_fps=24.0, num_inference_steps=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


@pytest.fixture(scope="module")
def pipe(checkpoint: Path) -> MovaPipeline:
    return MovaPipeline.from_pretrained(checkpoint)


def test_maker_writes_the_official_layout_that_loads_strictly(checkpoint: Path) -> None:
    index = json.loads((checkpoint / "model_index.json").read_text())
    assert index["_class_name"] == "MOVA" and index["boundary_ratio"] == 0.9
    assert set(COMPONENT_CLASSES) <= {p.name for p in checkpoint.iterdir()}
    module, config = load_component(checkpoint / "video_dit_2", VideoDiTConfig, VideoDiT)
    assert config.num_layers == 3 and not module.training
    assert (checkpoint / "scheduler" / "scheduler_config.json").is_file()


def test_tiny_generation_end_to_end_writes_a_playable_mp4(pipe: MovaPipeline,
                                                          tmp_path: Path) -> None:
    steps: list[int] = []
    started = time.perf_counter()
    clip = pipe.generate(PROMPT, height=64, width=112, num_frames=25, num_inference_steps=8,
                         seed=7, on_step=lambda k, n: steps.append(k))
    seconds = time.perf_counter() - started
    assert seconds < 60, f"tiny generation took {seconds:.1f} s"
    assert steps == list(range(1, 9))
    assert clip.video.shape == (25, 64, 112, 3) and clip.video.dtype == np.uint8
    assert clip.audio.shape == (1, 50_000) and clip.sample_rate == 48_000  # 48000 * 25 / 24
    assert clip.params.seed == 7 and clip.params.conditioning == "text_only"
    path = write_mp4(clip, tmp_path / "clip.mp4")
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.width, video.height) == (112, 64)
        assert audio.sample_rate == 48_000 and audio.channels == 2
        assert sum(1 for _ in container.decode(video=0)) == 25
    with av.open(str(path)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    assert abs(samples / 48_000 - 25 / 24) < 0.05


def test_same_seed_same_clip_other_seed_other_clip(pipe: MovaPipeline) -> None:
    first = pipe.generate(PROMPT, seed=3, **SMALL)  # type: ignore[arg-type]
    again = pipe.generate(PROMPT, seed=3, **SMALL)  # type: ignore[arg-type]
    other = pipe.generate(PROMPT, seed=4, **SMALL)  # type: ignore[arg-type]
    assert np.array_equal(first.video, again.video) and np.array_equal(first.audio, again.audio)
    assert not np.array_equal(first.audio, other.audio)


def test_audio_only_keeps_the_picture_and_makes_a_new_soundtrack(pipe: MovaPipeline) -> None:
    master = pipe.generate(PROMPT, seed=5, **SMALL)  # type: ignore[arg-type]
    dub = pipe.generate('The same barista says: "Frischer Kaffee, jeden Morgen."', seed=5,
                        mode="audio_only", video=master.video, **SMALL)  # type: ignore[arg-type]
    assert np.array_equal(dub.video, master.video)
    assert dub.audio.shape == master.audio.shape
    assert not np.allclose(dub.audio, master.audio)
    assert dub.params.conditioning == "locked_video"


def test_first_frame_conditioning_and_dual_guidance(pipe: MovaPipeline) -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (230, 40, 40)
    ti2va = pipe.generate(PROMPT, image=image, seed=1, **SMALL)  # type: ignore[arg-type]
    t2va = pipe.generate(PROMPT, seed=1, **SMALL)  # type: ignore[arg-type]
    dual = pipe.generate(PROMPT, image=image, seed=1, guidance_mode="dual", bridge_scale=2.0,
                         **SMALL)  # type: ignore[arg-type]
    assert ti2va.params.conditioning == "first_frame"
    assert not np.array_equal(ti2va.video, t2va.video)
    assert not np.array_equal(dual.video, ti2va.video)


def test_offload_modes_give_the_same_clip(checkpoint: Path, pipe: MovaPipeline) -> None:
    expected = pipe.generate(PROMPT, seed=2, **SMALL)  # type: ignore[arg-type]
    for mode in ("component", "block"):
        offloaded = MovaPipeline.from_pretrained(checkpoint, offload=mode, release_unused=True)
        clip = offloaded.generate(PROMPT, seed=2, **SMALL)  # type: ignore[arg-type]
        assert np.array_equal(clip.video, expected.video), mode
        assert np.allclose(clip.audio, expected.audio, atol=1e-6), mode


def test_cancellation_stops_between_steps(pipe: MovaPipeline) -> None:
    with pytest.raises(GenerationCancelled):
        pipe.generate(PROMPT, should_cancel=lambda: True, **SMALL)  # type: ignore[arg-type]


@pytest.mark.parametrize(("change", "message"), [
    ({"num_frames": 24}, "num_frames=24 must be 4k+1"),
    ({"height": 60}, "must be multiples of 16"),
    ({"prompt": "   "}, "prompt is empty"),
    ({"image": "not-an-image.png"}, "first frame must be a PIL image"),
    ({"mode": "audio_only"}, "audio_only needs video as uint8 array (9, 32, 48, 3)"),
    ({"guidance_mode": "triple"}, "guidance_mode='triple'"),
    ({"num_inference_steps": 0}, "num_inference_steps=0 must be at least 1"),
])
def test_bad_inputs_fail_fast_with_one_line(pipe: MovaPipeline, change: dict[str, object],
                                            message: str) -> None:
    kwargs: dict[str, object] = {"prompt": PROMPT, **SMALL, **change}
    prompt = kwargs.pop("prompt")
    started = time.perf_counter()
    with pytest.raises(InvalidRequest) as info:
        pipe.generate(prompt, **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value) and "\n" not in str(info.value)
    assert time.perf_counter() - started < 0.5, "validation must come before heavy work"


def test_missing_component_folder_is_named(checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    shutil.rmtree(broken / "audio_vae")
    with pytest.raises(CheckpointError, match="missing component folder.*audio_vae"):
        MovaPipeline.from_pretrained(broken)


def test_command_line_writes_an_mp4(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.mp4"
    code = generate_main(["--checkpoint", str(checkpoint), "--prompt", PROMPT, "--height", "32",
                          "--width", "48", "--frames", "9", "--steps", "2", "--out", str(out)])
    assert code == 0 and out.stat().st_size > 0
    assert generate_main(["--checkpoint", str(tmp_path / "nowhere"), "--prompt", PROMPT,
                          "--out", str(out)]) == 2


def test_dtype_choice_applies_to_the_towers(checkpoint: Path) -> None:
    pipe = MovaPipeline.from_pretrained(checkpoint, dtype="bfloat16")
    assert next(pipe.component("video_dit").parameters()).dtype == torch.bfloat16
    assert next(pipe.component("audio_vae").parameters()).dtype == torch.float32

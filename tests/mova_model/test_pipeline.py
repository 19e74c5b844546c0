"""MovaPipeline on a tiny checkpoint in the official layout: from a prompt to a playable mp4."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from safetensors.torch import load_file, save_file

from mova_model import lengths, video_vae
from mova_model import make_checkpoint as make_checkpoint_module
from mova_model.attention import sdpa_kernel
from mova_model.checkpoint import (
    COMPONENT_CLASSES,
    detect_preset,
    fingerprint_folder,
    load_component,
)
from mova_model.config import VideoDiTConfig, get_preset
from mova_model.context_parallel import init_context_parallel
from mova_model.errors import (
    CheckpointError,
    ConfigError,
    GenerationCancelled,
    GenerationFailed,
    InvalidRequest,
)
from mova_model.generate import main as generate_main
from mova_model.generate import write_mp4
from mova_model.joint import joint_forward
from mova_model.make_checkpoint import make_checkpoint
from mova_model.offload import OffloadMode
from mova_model.pipeline import MovaPipeline
from mova_model.request import GenerationRequest
from mova_model.sampler import draw_noise
from mova_model.text_encoder import FAST_ATTENTION, REFERENCE_ATTENTION, PromptTokens
from mova_model.video_dit import VideoDiT
from mova_model.video_vae import decode_latents, text_only_condition

PROMPT = 'A barista smiles at the camera. She says: "Fresh coffee, every morning."'
SMALL = dict(height=32, width=48, num_frames=9, video_fps=24.0, num_inference_steps=2)


def small(prompt: str = PROMPT, **changes: object) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, **{**SMALL, **changes})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


@pytest.fixture(scope="module")
def pipe(checkpoint: Path) -> MovaPipeline:
    # Loaded once for the module (mutation testing runs these tests for each mutant). Mutation
    # testing maps the loading code only to the first test using this fixture: the loading
    # tests below load their own pipeline.
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
    # (its wall time is a benchmark: bench/model_step.py, not an assert here)
    steps: list[int] = []
    request = GenerationRequest(PROMPT, height=64, width=112, num_frames=25,
                                num_inference_steps=8, seed=7)
    clip = pipe.generate(request, on_step=lambda k, n: steps.append(k))
    assert steps == list(range(1, 9))
    assert clip.video.shape == (25, 64, 112, 3) and clip.video.dtype == np.uint8
    assert clip.audio.shape == (1, 50_000) and clip.sample_rate == 48_000  # 48000 * 25 / 24
    assert clip.params.request == request and clip.params.conditioning == "text_only"
    assert clip.params.noise_drawn_on == "cpu" and not clip.params.vae_tiled
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
    first = pipe.generate(small(seed=3))
    again = pipe.generate(small(seed=3))
    other = pipe.generate(small(seed=4))
    assert np.array_equal(first.video, again.video) and np.array_equal(first.audio, again.audio)
    assert not np.array_equal(first.audio, other.audio)


def test_audio_only_keeps_the_picture_and_makes_a_new_soundtrack(pipe: MovaPipeline) -> None:
    master = pipe.generate(small(seed=5))
    dub = pipe.generate(small('The same barista says: "Frischer Kaffee, jeden Morgen."', seed=5,
                              mode="audio_only"), video=master.video)
    assert np.array_equal(dub.video, master.video)
    assert dub.audio.shape == master.audio.shape
    assert not np.allclose(dub.audio, master.audio)
    assert dub.params.conditioning == "locked_video"


def test_first_frame_conditioning_and_dual_guidance(pipe: MovaPipeline) -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (230, 40, 40)
    ti2va = pipe.generate(small(seed=1), image=image)
    t2va = pipe.generate(small(seed=1))
    dual = pipe.generate(small(seed=1, guidance_mode="dual", bridge_scale=2.0), image=image)
    assert ti2va.params.conditioning == "first_frame"
    assert not np.array_equal(ti2va.video, t2va.video)
    assert not np.array_equal(dual.video, ti2va.video)


def test_offload_modes_give_the_same_clip(checkpoint: Path, pipe: MovaPipeline) -> None:
    expected = pipe.generate(small(seed=2))
    for mode in ("component", "block"):
        offloaded = MovaPipeline.from_pretrained(checkpoint, offload=mode, release_unused=True)
        assert (offloaded.offload, offloaded.release_unused) == (OffloadMode(mode), True)
        clip = offloaded.generate(small(seed=2))
        assert np.array_equal(clip.video, expected.video), mode
        assert np.allclose(clip.audio, expected.audio, atol=1e-6), mode


def test_cancellation_stops_between_steps(pipe: MovaPipeline) -> None:
    with pytest.raises(GenerationCancelled):
        pipe.generate(small(), should_cancel=lambda: True)


@pytest.mark.parametrize(("change", "message"), [
    ({"image": "not-an-image.png"}, "first frame must be a PIL image"),
    ({"mode": "audio_only"}, "audio_only needs video as uint8 array (9, 32, 48, 3)"),
    ({"video": np.zeros((9, 32, 48, 3), np.uint8)}, "video is only used with mode='audio_only'"),
    # was silently ignored: the locked video's own first frame conditions the render
    ({"mode": "audio_only", "video": np.zeros((9, 32, 48, 3), np.uint8),
      "image": np.zeros((32, 48, 3), np.uint8)}, "audio_only takes no image"),
])
def test_bad_inputs_fail_fast_with_one_line(pipe: MovaPipeline, change: dict[str, object],
                                            message: str) -> None:
    inputs = {k: v for k, v in change.items() if k in ("image", "video")}
    request = small(**{k: v for k, v in change.items() if k not in inputs})
    steps: list[int] = []
    with pytest.raises(InvalidRequest) as info:
        pipe.generate(request, on_step=lambda k, n: steps.append(k), **inputs)  # type: ignore[arg-type]
    assert message in str(info.value) and "\n" not in str(info.value)
    assert steps == [], "validation must come before any denoising step"


def test_generate_takes_only_a_request(pipe: MovaPipeline) -> None:
    with pytest.raises(InvalidRequest, match="takes a GenerationRequest, not str"):
        pipe.generate(PROMPT)  # type: ignore[arg-type]


def test_a_prompt_that_cleans_to_nothing_is_refused(pipe: MovaPipeline) -> None:
    # a double-escaped no-break space: text to the request, nothing once cleaned (spec 5.1)
    with pytest.raises(InvalidRequest) as info:
        pipe.generate(small("&amp;nbsp; \t"))
    assert str(info.value) == "prompt is empty after cleaning; describe the scene in words"


def test_missing_component_folder_is_named(checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    shutil.rmtree(broken / "audio_vae")
    with pytest.raises(CheckpointError, match="missing component folder.*audio_vae"):
        MovaPipeline.from_pretrained(broken)


def test_a_folder_that_is_not_there_is_named_as_such(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Not `<folder>/video_dit/config.json: missing`, the first file a missing folder lacks."""
    (tmp_path / "file").write_text("x")
    for path, says in ((tmp_path / "nope", "no such checkpoint folder"),
                       (tmp_path / "file", "not a folder")):
        with pytest.raises(CheckpointError, match=f"^{path}: {says}$"):
            MovaPipeline.from_pretrained(path)
        assert generate_main(["--checkpoint", str(path), "--prompt", PROMPT,
                              "--out", str(tmp_path / "x.mp4")]) != 0
        assert capsys.readouterr().err == f"error: {path}: {says}\n"


def test_command_line_writes_an_mp4(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.mp4"
    code = generate_main(["--checkpoint", str(checkpoint), "--prompt", PROMPT, "--height", "32",
                          "--width", "48", "--frames", "9", "--steps", "2", "--out", str(out)])
    assert code == 0 and out.stat().st_size > 0
    assert generate_main(["--checkpoint", str(tmp_path / "nowhere"), "--prompt", PROMPT,
                          "--out", str(out)]) == 2


def test_command_line_sizes_default_to_the_checkpoints_preset(checkpoint: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "preset.mp4"
    # No size flags: 64x112, 25 frames from the tiny preset (one step keeps the test short).
    assert generate_main(["--checkpoint", str(checkpoint), "--prompt", PROMPT, "--steps", "1",
                          "--out", str(out)]) == 0
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (112, 64)
        assert sum(1 for _ in container.decode(video=0)) == 25


def test_preset_detection_and_help(checkpoint: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert detect_preset(checkpoint) == "tiny"
    tiny = get_preset("tiny")
    assert (tiny.height, tiny.width, tiny.num_frames, tiny.num_inference_steps) == (64, 112, 25, 8)
    # A folder the original saved (require_clip_embedding true) is still the same architecture.
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    config_path = copy / "audio_dit" / "config.json"
    config_path.write_text(config_path.read_text().replace('"require_clip_embedding": false',
                                                           '"require_clip_embedding": true'))
    assert detect_preset(copy) == "tiny"
    bridge = copy / "dual_tower_bridge" / "config.json"
    bridge.write_text(bridge.read_text().replace('"head_dim": 24', '"head_dim": 48'))
    assert detect_preset(copy) is None
    with pytest.raises(SystemExit):
        generate_main(["--help"])
    help_text = capsys.readouterr().out
    assert "tiny       64x112, 25 frames at 24 fps, 8 steps" in help_text
    assert "mova-360p  352x640, 193 frames at 24 fps, 50 steps" in help_text
    assert "mova-720p  720x1280, 193 frames at 24 fps, 50 steps" in help_text


def test_dtype_choice_applies_to_the_towers(checkpoint: Path) -> None:
    pipe = MovaPipeline.from_pretrained(checkpoint, dtype="bfloat16")
    assert next(pipe.component("video_dit").parameters()).dtype == torch.bfloat16
    assert next(pipe.component("audio_vae").parameters()).dtype == torch.float32


def test_prompt_routing_checked_by_value(pipe: MovaPipeline) -> None:
    """The guided step is neg + s·(pos − neg) with pos from the prompt and neg from the negative
    prompt, each encoded on its own: recomputed here from the components, one step, no sampler."""
    request = small(seed=11, num_inference_steps=1, cfg_scale=8.0,
                    negative_prompt="blurry, static, washed out")
    clip = pipe.generate(request)
    encoder, config = pipe.text_encoder, pipe.video_vae_config
    positive = encoder.encode([request.prompt])
    negative = encoder.encode([request.negative_prompt])
    vae = pipe.component("video_vae")
    with torch.inference_mode():
        mask, first = text_only_condition(vae, request.num_frames, request.height, request.width,
                                          config)
        condition = torch.cat([mask, first], dim=1)
        l_a = lengths.audio_latent_frames(request.num_frames, request.video_fps)
        video_noise, audio_noise = draw_noise(request.seed, (1, 16, 3, 4, 6), (1, 128, l_a))
        t_video, t_audio = pipe.scheduler.pair_timesteps(1)[0]
        models = (pipe.component("video_dit"), pipe.component("audio_dit"),
                  pipe.component("dual_tower_bridge"))
        video_input = torch.cat([video_noise, condition], dim=1)

        def velocities(context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return joint_forward(*models, video_input, audio_noise, context, t_video.reshape(1),
                                 t_audio.reshape(1), request.video_fps, 1.0)

        (v_pos, a_pos), (v_neg, a_neg) = velocities(positive), velocities(negative)

        def clip_from(v: torch.Tensor, a: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            z_video = pipe.scheduler.step(video_noise, v, t_video, None)
            z_audio = pipe.scheduler.step(audio_noise, a, t_audio, None)
            frames = decode_latents(vae, z_video, config)[0].numpy()
            audio = pipe.component("audio_vae").decode(z_audio)[0, :, :clip.audio.shape[1]]
            return frames, audio.numpy()

        s = request.cfg_scale
        frames, audio = clip_from(v_neg + s * (v_pos - v_neg), a_neg + s * (a_pos - a_neg))
        swapped = clip_from(v_pos + s * (v_neg - v_pos), a_pos + s * (a_neg - a_pos))
    # Routing right: equal up to float rounding (measured: identical); at most one uint8 step.
    assert np.abs(clip.video.astype(int) - frames.astype(int)).max() <= 1
    assert np.abs(clip.audio - audio).max() <= 1e-6
    # Routing swapped differs by (2s − 1)(pos − neg) per step: measured 26 uint8 steps and
    # 5e-4 in the waveform for these random tiny weights, far outside the tolerance above.
    assert np.abs(clip.video.astype(int) - swapped[0].astype(int)).max() > 8
    assert np.abs(clip.audio - swapped[1]).max() > 1e-4


def test_fast_mode_is_the_same_model_with_other_rounding(pipe: MovaPipeline) -> None:
    reference = pipe.generate(small(seed=6))
    fast = pipe.generate(small(seed=6, compat="fast"))
    assert fast.params.request.compat == "fast" and reference.params.request.compat == "reference"
    # Batched guidance and SDPA in the text encoder: float rounding apart, not another clip.
    assert np.abs(fast.audio - reference.audio).max() < 1e-3
    assert np.abs(fast.video.astype(int) - reference.video.astype(int)).max() <= 2


def test_asked_for_tiling_is_recorded_and_not_left_on(pipe: MovaPipeline) -> None:
    untiled = pipe.generate(small(seed=8))
    tiled = pipe.generate(small(seed=8, vae_tiling=True))
    assert tiled.params.vae_tiled and not untiled.params.vae_tiled
    assert tiled.params.to_dict()["vae_tiled"] is True
    assert not pipe.component("video_vae").use_tiling
    # The next untiled clip is the first one again: no state carried between calls.
    assert np.array_equal(pipe.generate(small(seed=8)).video, untiled.video)


def test_noise_device_is_recorded(pipe: MovaPipeline) -> None:
    clip = pipe.generate(small(seed=9, noise_device="cpu"))
    assert clip.params.noise_drawn_on == "cpu"
    assert clip.params.to_dict()["noise_device"] == "cpu"
    # a folder that gives itself no name (as the release's do not) is named after the folder
    assert clip.params.to_dict()["model"] == pipe.path.resolve().name == "tiny"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_render_device_noise_is_what_the_release_draws_on_cuda() -> None:
    video, audio = draw_noise(42, (1, 16, 3, 4, 6), (1, 128, 10), device="cuda")
    torch.manual_seed(42)  # the release script, then randn on the device: video, then audio
    expected_video = torch.randn((1, 16, 3, 4, 6), device="cuda")
    expected_audio = torch.randn((1, 128, 10), device="cuda")
    assert torch.equal(video, expected_video) and torch.equal(audio, expected_audio)


@pytest.mark.parametrize(("name", "dtype"), [
    ("float32", torch.float32), ("fp32", torch.float32), ("bfloat16", torch.bfloat16),
    ("bf16", torch.bfloat16), ("float16", torch.float16), ("fp16", torch.float16),
    (torch.bfloat16, torch.bfloat16),
])
def test_every_dtype_name_loads_the_towers_in_that_dtype(checkpoint: Path, name: object,
                                                         dtype: torch.dtype) -> None:
    pipe = MovaPipeline.from_pretrained(checkpoint, dtype=name)  # type: ignore[arg-type]
    assert pipe.dtype == dtype
    assert next(pipe.component("video_dit_2").parameters()).dtype == dtype


def test_an_unknown_dtype_or_offload_is_refused_with_the_choices(checkpoint: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        MovaPipeline.from_pretrained(checkpoint, dtype="float64")
    assert str(info.value) == ("dtype 'float64'; expected one of float32, fp32, bfloat16, bf16, "
                               "float16, fp16")
    with pytest.raises(InvalidRequest) as info:
        MovaPipeline.from_pretrained(checkpoint, offload="disk")
    assert str(info.value) == "offload='disk'; expected one of none, component, block"
    with pytest.raises(InvalidRequest) as info:
        MovaPipeline.from_pretrained(checkpoint, context_parallel=0)
    assert str(info.value) == "context_parallel=0 must be at least 1"


def _edited_index(checkpoint: Path, folder: Path, **changes: object) -> Path:
    """A copy of the checkpoint whose model_index.json has these keys set (None: removed)."""
    shutil.copytree(checkpoint, folder)
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text())
    for key, value in changes.items():
        if value is None:
            index.pop(key, None)
        else:
            index[key] = value
    index_file.write_text(json.dumps(index))
    return folder


def test_the_expert_boundary_and_the_name_come_from_the_model_index(checkpoint: Path,
                                                                    tmp_path: Path) -> None:
    named = _edited_index(checkpoint, tmp_path / "named", boundary_ratio=0.875,
                          _model_name="demo model")
    pipe = MovaPipeline.from_pretrained(named)
    assert (pipe.boundary_ratio, pipe.model_name) == (0.875, "demo model")
    # the release's default boundary (0.9) when the index has none; the folder's own name
    plain = _edited_index(checkpoint, tmp_path / "MOVA-360p", boundary_ratio=None,
                          _model_name=None)
    pipe = MovaPipeline.from_pretrained(plain)
    assert (pipe.boundary_ratio, pipe.model_name) == (0.9, "MOVA-360p")


def test_an_unreadable_model_index_is_named(checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    (broken / "model_index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model_index.json: invalid JSON \("):
        MovaPipeline.from_pretrained(broken)
    (broken / "model_index.json").unlink()
    with pytest.raises(CheckpointError) as info:
        MovaPipeline.from_pretrained(broken)
    assert str(info.value) == (f"{broken / 'model_index.json'}: missing; is {broken} a MOVA "
                               "checkpoint folder?")


@pytest.mark.parametrize(("offload", "storage"), [
    ("none", "cuda"), ("component", "cpu"), ("block", "cpu"),
])
def test_offloaded_weights_are_kept_in_host_memory(checkpoint: Path, offload: str,
                                                    storage: str) -> None:
    # Only the constructor runs (no CUDA device needed): where each component's weights are
    # loaded to, for a pipeline that computes on the GPU.
    pipe = MovaPipeline(checkpoint, dtype=torch.bfloat16, device=torch.device("cuda"),
                        offload=OffloadMode(offload), release_unused=False)
    assert pipe.offload is OffloadMode(offload)
    assert pipe._storage_device() == torch.device(storage)


def test_a_released_component_is_reloaded_from_the_folder(pipe: MovaPipeline) -> None:
    before = {k: v.clone() for k, v in pipe.component("audio_dit").state_dict().items()}
    first = pipe.component("audio_dit")
    pipe.release("audio_dit")
    pipe.release("audio_dit")  # twice: releasing what is not loaded is no error
    again = pipe.component("audio_dit")
    assert again is not first
    after = again.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert pipe.component("audio_dit") is again  # loaded once, then kept


def test_the_vae_decodes_in_tiles_only_when_asked(pipe: MovaPipeline,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    vae = pipe.component("video_vae")
    tiling_at_decode: list[bool] = []
    real_decode = vae.decode

    def watched_decode(*args: object, **kwargs: object) -> object:
        tiling_at_decode.append(vae.use_tiling)  # what the real decoder is about to do
        return real_decode(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", watched_decode)
    pipe.generate(small(seed=8))
    pipe.generate(small(seed=8, vae_tiling=True))
    assert tiling_at_decode == [False, True]


def test_an_out_of_memory_decode_falls_back_to_tiles_and_says_so(
        pipe: MovaPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    # A whole-clip decode that runs out of device memory (no GPU here: the first untiled
    # decode raises what torch raises) is done again in tiles; a tiled one is not retried.
    import mova_model.pipeline as pipeline_module

    real = pipeline_module.decode_latents
    calls: list[bool] = []

    def short_of_memory(*args: object, tile: bool = False, **kwargs: object) -> torch.Tensor:
        calls.append(tile)
        if not tile or len(calls) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args, tile=tile, **kwargs)  # type: ignore[arg-type]

    expected = pipe.generate(small(seed=8, vae_tiling=True))
    monkeypatch.setattr(pipeline_module, "decode_latents", short_of_memory)
    clip = pipe.generate(small(seed=8))
    assert calls == [False, True]
    assert clip.params.vae_tiled is True
    assert np.array_equal(clip.video, expected.video)
    with pytest.raises(torch.OutOfMemoryError):
        pipe.generate(small(seed=8, vae_tiling=True))
    assert calls == [False, True, True]


def test_a_clip_records_everything_that_made_it(pipe: MovaPipeline) -> None:
    request = small(seed=4, video_fps=25.0)
    clip = pipe.generate(request)
    assert (clip.fps, clip.sample_rate) == (25.0, 48_000)
    assert clip.audio.shape == (1, lengths.audio_samples(9, 25.0))
    record = clip.params.to_dict()
    tokens = pipe.text_encoder.token_count(request.prompt)
    assert {k: record[k] for k in record if k not in request.to_dict()} == {
        "model": "tiny", "conditioning": "text_only", "noise_drawn_on": "cpu",
        "vae_tiled": False, "attention_backend": "sdpa", "context_parallel": 1, "lora": None,
        "prompt_tokens": tokens, "prompt_tokens_kept": tokens, "prompt_truncated": False}
    assert clip.params.request is request


@pytest.mark.parametrize("compat", ["reference", "fast"])
def test_a_prompt_cut_at_512_tokens_is_rendered_and_the_clip_says_so(
        pipe: MovaPipeline, compat: str) -> None:
    long_prompt = " ".join(["morning"] * 599)  # one token a word, and the EOS: 600 tokens
    record = pipe.generate(small(long_prompt, seed=4, compat=compat)).params.to_dict()
    assert (record["prompt_tokens"], record["prompt_tokens_kept"]) == (600, 512)
    assert record["prompt_truncated"] is True


@pytest.mark.parametrize("release_unused", [True, False])
def test_release_unused_frees_the_high_noise_expert_after_the_switch(
        checkpoint: Path, release_unused: bool) -> None:
    pipe = MovaPipeline.from_pretrained(checkpoint, release_unused=release_unused)
    high_noise = pipe.component("video_dit")
    clip = pipe.generate(small(seed=5, num_inference_steps=4))  # both experts run
    assert ("video_dit" in pipe._modules) is not release_unused
    assert "video_dit_2" in pipe._modules and "audio_dit" in pipe._modules
    if release_unused:  # the next clip loads it again from the folder, and is the same
        again = pipe.generate(small(seed=5, num_inference_steps=4))
        assert pipe.component("video_dit") is not high_noise
        assert np.array_equal(again.video, clip.video)


def test_a_cpu_render_warns_about_nothing(pipe: MovaPipeline) -> None:
    # e.g. a CUDA autocast asked for on the CPU warns and is disabled: nothing of the kind
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.generate(small(seed=11))


def test_a_pipeline_on_a_one_rank_group_runs_its_steps_through_it(checkpoint: Path,
                                                                   pipe: MovaPipeline,
                                                                   tmp_path: Path) -> None:
    # (with two ranks: tests/mova_model/test_context_parallel.py, a slow multi-process test)
    expected = pipe.generate(small(seed=3))
    init_context_parallel(0, 1, f"file://{tmp_path / 'rdv'}", torch.device("cpu"), timeout_s=30)
    try:
        grouped = MovaPipeline.from_pretrained(checkpoint, process_group=dist.group.WORLD)
        clip = grouped.generate(small(seed=3))
    finally:
        dist.destroy_process_group()
    assert grouped.context_parallel is not None and grouped.context_parallel.world_size == 1
    assert grouped.context_parallel.stats.collectives > 0  # every step went through the group
    assert clip.params.context_parallel == 1
    assert np.array_equal(clip.video, expected.video)
    assert np.allclose(clip.audio, expected.audio, atol=1e-6)


@pytest.mark.parametrize(("changes", "expected_calls"), [
    # the release encodes the prompt and the negative prompt each on its own, fp32 softmax
    ({}, [(1, REFERENCE_ATTENTION), (1, REFERENCE_ATTENTION)]),
    # fast: both in one batch through SDPA
    ({"compat": "fast"}, [(2, FAST_ATTENTION)]),
    # no guidance (scale 1): the negative prompt is not needed, so not encoded
    ({"cfg_scale": 1.0}, [(1, REFERENCE_ATTENTION)]),
    ({"cfg_scale": 1.0, "compat": "fast"}, [(1, FAST_ATTENTION)]),
])
def test_prompts_are_encoded_as_the_compat_mode_says(
        pipe: MovaPipeline, monkeypatch: pytest.MonkeyPatch, changes: dict[str, object],
        expected_calls: list[tuple[int, str]]) -> None:
    encoder = pipe.text_encoder
    real_encode = encoder.encode_counted
    calls: list[tuple[int, str]] = []

    def watched_encode(prompts: list[str], text_len: int = 512, *,
                       attention: str = REFERENCE_ATTENTION
                       ) -> tuple[torch.Tensor, list[PromptTokens]]:
        calls.append((len(prompts), attention))
        assert text_len == 512  # every context is padded to the release's 512 rows
        return real_encode(prompts, text_len, attention=attention)

    monkeypatch.setattr(encoder, "encode_counted", watched_encode)
    clip = pipe.generate(small(seed=12, **changes))
    assert calls == expected_calls
    assert clip.video.shape == (9, 32, 48, 3)


def test_audio_only_denoises_the_sound_against_the_locked_picture_by_value(
        pipe: MovaPipeline) -> None:
    """Voice-over mode recomputed from the components for one unguided step: the video latent
    is the locked picture's clean latent at t = 0, the first frame conditions as in TI2VA, and
    only the audio takes the Euler step."""
    master = pipe.generate(small(seed=5))
    request = small(seed=13, mode="audio_only", num_inference_steps=1, cfg_scale=1.0)
    dub = pipe.generate(request, video=master.video)
    vae, config = pipe.component("video_vae"), pipe.video_vae_config
    with torch.inference_mode():
        locked = video_vae.encode_video(vae, master.video, config)  # (1, 16, 3, 4, 6)
        pixels = video_vae.prepare_first_frame(master.video[0], 32, 48)
        first = video_vae.encode_first_frame(vae, pixels, 9, config)
        condition = torch.cat([video_vae.first_frame_mask(3, 4, 6), first], dim=1)
        l_a = lengths.audio_latent_frames(9, 24.0)
        _, audio_noise = draw_noise(request.seed, (1, 16, 3, 4, 6), (1, 128, l_a))
        t_video, t_audio = pipe.scheduler.pair_timesteps(1, video_fixed=True)[0]
        assert t_video == 0  # the picture is clean, so the low-noise expert runs
        _, velocity = joint_forward(
            pipe.component("video_dit_2"), pipe.component("audio_dit"),
            pipe.component("dual_tower_bridge"), torch.cat([locked, condition], dim=1),
            audio_noise, pipe.text_encoder.encode([request.prompt]), t_video.reshape(1),
            t_audio.reshape(1), 24.0, 1.0)
        z_audio = pipe.scheduler.step(audio_noise, velocity, t_audio, None)
        audio = pipe.component("audio_vae").decode(z_audio)[0, :, :dub.audio.shape[1]].numpy()
    assert np.array_equal(dub.video, master.video)
    assert np.abs(dub.audio - audio).max() <= 1e-6
    assert dub.params.vae_tiled is False  # the locked picture is not decoded at all


@pytest.mark.parametrize(("video", "found"), [
    (None, "NoneType"),
    ([[0]], "list"),
    (np.zeros((9, 32, 40, 3), np.uint8), "(9, 32, 40, 3)"),
    (np.zeros((9, 32, 48, 3), np.float32), "(9, 32, 48, 3)"),  # the right shape, not uint8
])
def test_voice_over_refuses_a_picture_it_cannot_lock(pipe: MovaPipeline, video: object,
                                                     found: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        pipe.generate(small(mode="audio_only"), video=video)  # type: ignore[arg-type]
    assert str(info.value) == f"audio_only needs video as uint8 array (9, 32, 48, 3); got {found}"


def test_a_picture_is_refused_outside_voice_over(pipe: MovaPipeline) -> None:
    with pytest.raises(InvalidRequest) as info:
        pipe.generate(small(), video=np.zeros((9, 32, 48, 3), np.uint8))
    assert str(info.value) == "video is only used with mode='audio_only'"


@pytest.mark.parametrize(("argument", "environment", "compiled"), [
    (True, "0", True), (False, "1", False), (None, "1", True), (None, None, False),
])
def test_compile_blocks_argument_overrides_mova_compile(
        checkpoint: Path, monkeypatch: pytest.MonkeyPatch, argument: bool | None,
        environment: str | None, compiled: bool) -> None:
    if environment is None:
        monkeypatch.delenv("MOVA_COMPILE", raising=False)
    else:
        monkeypatch.setenv("MOVA_COMPILE", environment)
    pipe = MovaPipeline.from_pretrained(checkpoint, compile_blocks=argument)
    assert pipe.compile_blocks is compiled
    blocks = pipe.component("audio_dit").blocks  # type: ignore[union-attr]
    assert all((b._compiled_call_impl is not None) is compiled for b in blocks)


def test_by_default_a_pipeline_keeps_both_experts(checkpoint: Path) -> None:
    assert MovaPipeline.from_pretrained(checkpoint).release_unused is False


def test_context_parallel_is_refused_without_a_group_of_that_size(checkpoint: Path,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        MovaPipeline.from_pretrained(checkpoint, context_parallel=2)
    assert str(info.value).startswith("context parallel needs torch.distributed initialised")
    init_context_parallel(0, 1, f"file://{tmp_path / 'rdv'}", torch.device("cpu"), timeout_s=30)
    try:
        with pytest.raises(ConfigError) as info:
            MovaPipeline.from_pretrained(checkpoint, context_parallel=2,
                                         process_group=dist.group.WORLD)
    finally:
        dist.destroy_process_group()
    assert str(info.value) == "context_parallel=2 but the process group has 1 ranks"


@pytest.mark.parametrize(("offload", "streamed"), [
    ("block", True), ("component", False), ("none", False),
])
def test_block_offload_streams_each_towers_blocks_and_only_then(checkpoint: Path, offload: str,
                                                                 streamed: bool) -> None:
    pipe = MovaPipeline.from_pretrained(checkpoint, offload=offload)
    for name in ("video_dit", "video_dit_2", "audio_dit"):
        for block in pipe.component(name).blocks:  # type: ignore[union-attr]
            # a hook moves the block to the compute device before its forward, one moves it
            # back after
            assert (len(block._forward_pre_hooks), len(block._forward_hooks)) == (
                (1, 1) if streamed else (0, 0))


def test_a_constructed_pipeline_starts_plain_until_from_pretrained_configures_it(
        checkpoint: Path) -> None:
    pipe = MovaPipeline(checkpoint, dtype=torch.float32, device=torch.device("cpu"),
                        offload=OffloadMode.NONE, release_unused=False)
    assert (pipe.attention.name, pipe.attention.kernel) == ("sdpa", sdpa_kernel)
    assert pipe.attention_backend == "sdpa"
    assert pipe.compile_blocks is False and pipe.context_parallel is None
    assert pipe.lora is None
    # what a render key records as "the model": the folder's content, not its path
    assert pipe.checkpoint_fingerprint == fingerprint_folder(checkpoint)
    assert MovaPipeline.from_pretrained(checkpoint).checkpoint_fingerprint == \
        fingerprint_folder(checkpoint)


def test_every_missing_component_folder_is_named(checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(checkpoint, broken)
    shutil.rmtree(broken / "audio_vae")
    shutil.rmtree(broken / "video_vae")
    with pytest.raises(CheckpointError) as info:
        MovaPipeline.from_pretrained(broken)
    assert str(info.value) == f"{broken}: missing component folder(s): audio_vae, video_vae"


def _with_nan(checkpoint: Path, folder: Path, component: str, needle: str) -> Path:
    """A copy of the checkpoint with one tensor of `component` (the first whose name holds
    `needle`) set to NaN."""
    shutil.copytree(checkpoint, folder)
    path = folder / component / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    key = next(k for k in sorted(tensors) if needle in k)
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(path))
    return folder


@pytest.mark.parametrize(("component", "needle", "output"), [
    ("video_dit", "head.head.weight", "video"), ("audio_vae", "decoder", "audio"),
])
def test_nan_weights_fail_the_render_instead_of_a_black_silent_clip(
        checkpoint: Path, tmp_path: Path, component: str, needle: str, output: str) -> None:
    folder = _with_nan(checkpoint, tmp_path / "nan", component, needle)
    with pytest.raises(GenerationFailed) as info:
        MovaPipeline.from_pretrained(folder).generate(small(num_frames=5, num_inference_steps=1))
    assert str(info.value) == (f"the decoded {output} contains NaN or infinite values; the "
                               "checkpoint's weights or config numbers are the likely cause")


def test_a_failed_command_line_render_leaves_no_file(checkpoint: Path, tmp_path: Path) -> None:
    folder = _with_nan(checkpoint, tmp_path / "nan", "video_dit", "head.head.weight")
    out = tmp_path / "out" / "clip.mp4"
    out.parent.mkdir()
    assert generate_main(["--checkpoint", str(folder), "--prompt", PROMPT, "--height", "32",
                          "--width", "48", "--frames", "5", "--steps", "1",
                          "--out", str(out)]) == 2
    assert list(out.parent.iterdir()) == []


def test_write_mp4_replaces_the_file_only_when_complete(pipe: MovaPipeline,
                                                        tmp_path: Path) -> None:
    clip = pipe.generate(small(num_frames=5, num_inference_steps=1))
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"the previous clip")
    # the AAC encoder refuses NaN samples after the video frames were already written
    with pytest.raises((av.FFmpegError, ValueError)):
        write_mp4(dataclasses.replace(clip, audio=np.full_like(clip.audio, np.nan)), out)
    assert out.read_bytes() == b"the previous clip"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    write_mp4(clip, out)
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5


@pytest.mark.parametrize(("out", "message"), [
    ("clip.txt", "must end in .mp4"), ("clip", "must end in .mp4"),
    ("folder.mp4", "is a folder"), ("/proc/nope/x.mp4", "cannot write in /proc/nope"),
])
def test_the_command_line_checks_out_before_loading_anything(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str,
        message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "folder.mp4").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(MovaPipeline, "from_pretrained", _never_called)
    assert generate_main(["--checkpoint", str(checkpoint), "--prompt", PROMPT,
                          "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out}: ") and message in err
    assert err.count("\n") == 1


def _never_called(*args: object, **kwargs: object) -> None:
    raise AssertionError("the checkpoint must not be loaded")


@pytest.mark.parametrize(("device", "message"), [
    ("bogus", "device 'bogus' is not a torch device"),
    ("cuda:99", "device 'cuda:99': this machine has"),
])
def test_an_unusable_device_is_one_line(checkpoint: Path, tmp_path: Path, device: str,
                                        message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InvalidRequest, match=message):
        MovaPipeline.from_pretrained(checkpoint, device=device)
    assert generate_main(["--checkpoint", str(checkpoint), "--prompt", PROMPT, "--device",
                          device, "--out", str(tmp_path / "x.mp4")]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"error: device '{device}'")


def test_a_decompression_bomb_image_is_one_line(checkpoint: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2 * 1000: a "bomb"
    assert generate_main(["--checkpoint", str(checkpoint), "--prompt", PROMPT, "--image",
                          str(image), "--out", str(tmp_path / "x.mp4")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --image {image}: ")


def test_bad_api_arguments_are_one_line_errors(pipe: MovaPipeline, checkpoint: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"first frame is empty \(0x0 pixels\)"):
        pipe.generate(small(), image=np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(InvalidRequest, match="checkpoint path must be a str or Path, not "
                                             "NoneType"):
        MovaPipeline.from_pretrained(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="dtype torch.int8; expected one of"):
        MovaPipeline.from_pretrained(checkpoint, dtype=torch.int8)


def test_overwrite_keeps_the_old_checkpoint_until_the_new_one_is_complete(
        checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "ck"
    shutil.copytree(checkpoint, out)
    before = fingerprint_folder(out)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed while building")

    monkeypatch.setattr(make_checkpoint_module, "build_tokenizer", crash)
    with pytest.raises(RuntimeError, match="killed while building"):
        make_checkpoint(out, preset="tiny", overwrite=True)
    assert fingerprint_folder(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no staging folder left behind

    def marker(staging: Path, config: object, **kwargs: object) -> None:
        (staging / "new").write_text("complete")

    monkeypatch.setattr(make_checkpoint_module, "_write_components", marker)
    make_checkpoint(out, preset="tiny", overwrite=True)
    assert [p.name for p in out.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_make_checkpoint_on_a_file_is_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file"
    out.write_text("not a folder")
    assert make_checkpoint_module.main([str(out), "--overwrite"]) == 2
    assert capsys.readouterr().err == f"error: {out} is a file, not a checkpoint folder\n"
    assert out.read_text() == "not a folder"

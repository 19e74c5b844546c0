"""Every config.json the original MOVA code loads, loads here too (spec §13.1).

Flags that add no tensor upstream are accepted whatever their value; absent fields take the
upstream constructor's default (not the release value); flags that build layers MOVA lacks fail
with the flag's name and the file's path.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from mova_model.audio_dit import AudioDiT
from mova_model.bridge import DualTowerBridge
from mova_model.checkpoint import load_component, read_config, save_component
from mova_model.config import (
    INERT_DIT_FLAGS,
    INTERACTION_STRATEGIES,
    STRUCTURAL_DIT_FLAGS,
    AudioDiTConfig,
    AudioVAEConfig,
    BridgeConfig,
    SchedulerConfig,
    TextEncoderConfig,
    VideoDiTConfig,
    VideoVAEConfig,
    get_preset,
)
from mova_model.errors import CheckpointError
from mova_model.make_checkpoint import make_checkpoint
from mova_model.pipeline import MovaPipeline
from mova_model.video_dit import VideoDiT
from tests.mova_model.tiny_models import randomize_

TINY = get_preset("tiny")
TOWERS: dict[str, tuple[Any, Any, Any]] = {
    "video_dit": (VideoDiTConfig, VideoDiT, TINY.video_dit),
    "audio_dit": (AudioDiTConfig, AudioDiT, TINY.audio_dit),
}


def _write(folder: Path, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(data))
    return folder / "config.json"


@pytest.mark.parametrize("tower", sorted(TOWERS))
# all off, all on, and each on alone: no code reads them, so no pair can interact
@pytest.mark.parametrize("values", [
    (False,) * len(INERT_DIT_FLAGS), (True,) * len(INERT_DIT_FLAGS),
    *[tuple(i == j for j in range(len(INERT_DIT_FLAGS))) for i in range(len(INERT_DIT_FLAGS))]])
def test_every_inert_dit_flag_combination_loads(tmp_path: Path, tower: str,
                                                values: tuple[bool, ...]) -> None:
    config_cls, build, tiny = TOWERS[tower]
    flags = dict(zip(INERT_DIT_FLAGS, values, strict=True))
    data = {**tiny.to_config_dict(), **flags, "in_dim_control_adapter": 48}
    model = build(tiny)
    randomize_(model, seed=1)
    save_component(model, tiny, tmp_path)
    _write(tmp_path, data)
    loaded, config = load_component(tmp_path, config_cls, build)
    assert {flag: getattr(config, flag) for flag in INERT_DIT_FLAGS} == flags
    # No tensor depends on these flags: the same keys, the same values.
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("tower", sorted(TOWERS))
@pytest.mark.parametrize("flag", STRUCTURAL_DIT_FLAGS)
def test_structural_dit_flags_fail_naming_flag_and_file(tmp_path: Path, tower: str,
                                                        flag: str) -> None:
    config_cls, _, tiny = TOWERS[tower]
    path = _write(tmp_path / tower, {**tiny.to_config_dict(), flag: True})
    with pytest.raises(CheckpointError) as info:
        read_config(tmp_path / tower, config_cls)
    assert str(path) in str(info.value) and f"{flag}=true" in str(info.value)


@pytest.mark.parametrize(("trainable", "cross_rope", "first_frame_bias", "strategy"),
                         list(itertools.product([False, True], [False, True], [False, True],
                                                INTERACTION_STRATEGIES)))
def test_every_bridge_flag_combination_loads(tmp_path: Path, trainable: bool, cross_rope: bool,
                                             first_frame_bias: bool, strategy: str) -> None:
    config = TINY.bridge.replace(trainable_condition_scale=trainable, apply_cross_rope=cross_rope,
                                 apply_first_frame_bias_in_rope=first_frame_bias,
                                 interaction_strategy=strategy)
    model = DualTowerBridge(config)
    save_component(model, config, tmp_path)
    loaded, read = load_component(tmp_path, BridgeConfig, DualTowerBridge)
    assert read == config
    assert ("condition_scale" in loaded.state_dict()) == trainable


def test_trainable_condition_scale_is_one_fp32_parameter_overridden_by_the_explicit_scale(
        tmp_path: Path) -> None:
    plain = DualTowerBridge(TINY.bridge)
    randomize_(plain, seed=2)
    trained = DualTowerBridge(TINY.bridge.replace(trainable_condition_scale=True))
    param = trained.condition_scale
    assert param.shape == (1,) and param.dtype == torch.float32 and param.item() == 1.0
    trained.load_state_dict({**plain.state_dict(), "condition_scale": torch.tensor([3.0])})
    save_component(trained, trained.config, tmp_path)
    loaded, _ = load_component(tmp_path, BridgeConfig, DualTowerBridge)
    assert loaded.condition_scale.item() == 3.0
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(1, 12, TINY.bridge.visual_hidden_dim, generator=gen)
    audio = torch.randn(1, 5, TINY.bridge.audio_hidden_dim, generator=gen)
    rope_v, rope_a = plain.aligned_rope((3, 2, 2), 5, 24.0, torch.float32, torch.device("cpu"))
    with torch.inference_mode():
        expected = plain.exchange(0, video, audio, rope_v, rope_a, 1.0)
        found = loaded.exchange(0, video, audio, rope_v, rope_a, 1.0)
    # The stored 3.0 is ignored: the explicit scale 1.0 wins, as in the original pipeline.
    assert torch.equal(found[0], expected[0]) and torch.equal(found[1], expected[1])


def test_absent_fields_take_the_upstream_constructor_defaults(tmp_path: Path) -> None:
    bridge = read_config(_write(tmp_path / "bridge", {"visual_hidden_dim": 96,
                                                      "audio_hidden_dim": 48,
                                                      "head_dim": 24}).parent, BridgeConfig)
    assert (bridge.visual_layers, bridge.audio_layers) == (30, 30)
    assert bridge.audio_fps == 44100 / 2048 and bridge.interaction_strategy == "shallow_focus"
    assert not bridge.apply_cross_rope and not bridge.trainable_condition_scale
    assert read_config(_write(tmp_path / "bridge2", {}).parent, BridgeConfig).visual_hidden_dim \
        == 3072
    video = {k: v for k, v in TINY.video_dit.to_config_dict().items()
             if k not in ("require_clip_embedding", "require_vae_embedding")}
    config = read_config(_write(tmp_path / "video", video).parent, VideoDiTConfig)
    assert config.require_clip_embedding and config.require_vae_embedding
    scheduler = read_config(_write(tmp_path / "sched", {}).parent, SchedulerConfig)
    assert scheduler.shift == 3.0 and not scheduler.extra_one_step
    dac = {"encoder_dim": 8, "continuous": True}
    vae = read_config(_write(tmp_path / "dac", dac).parent, AudioVAEConfig)
    assert vae.sample_rate == 44100 and vae.latent_dim == 8 * 2**4


def test_absent_vae_type_is_oobleck_which_fails_naming_field_and_file(tmp_path: Path) -> None:
    data = {k: v for k, v in TINY.audio_dit.to_config_dict().items() if k != "vae_type"}
    path = _write(tmp_path / "audio_dit", data)
    with pytest.raises(CheckpointError) as info:
        read_config(path.parent, AudioDiTConfig)
    assert str(path) in str(info.value) and "vae_type='oobleck'" in str(info.value)


def test_absent_required_field_is_named_with_the_file(tmp_path: Path) -> None:
    data = {k: v for k, v in TINY.video_dit.to_config_dict().items() if k != "has_image_input"}
    path = _write(tmp_path / "video_dit", data)
    with pytest.raises(CheckpointError, match=rf"{path}: .*has_image_input"):
        read_config(path.parent, VideoDiTConfig)


def test_pooled_adaln_fails_naming_flag_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "bridge", {**TINY.bridge.to_config_dict(), "pooled_adaln": True})
    with pytest.raises(CheckpointError, match=rf"{path}: pooled_adaln=true"):
        read_config(path.parent, BridgeConfig)


def test_release_presets_write_the_release_values() -> None:
    release = get_preset("mova-360p")
    assert release.bridge.to_config_dict() == {
        "_class_name": "DualTowerConditionalBridge", "visual_layers": 40, "audio_layers": 30,
        "visual_hidden_dim": 5120, "audio_hidden_dim": 1536, "audio_fps": 50.0, "head_dim": 128,
        "interaction_strategy": "full", "apply_cross_rope": True,
        "apply_first_frame_bias_in_rope": False, "trainable_condition_scale": False,
        "pooled_adaln": False,
    }
    assert release.audio_dit.vae_type == "dac" and not release.video_dit.require_clip_embedding
    assert release.audio_vae.sample_rate == 48000 and release.audio_vae.hop_length == 960
    assert release.scheduler.shift == 5.0 and release.scheduler.extra_one_step


def test_folder_saved_by_the_original_with_clip_flag_loads_in_the_pipeline(
        tmp_path: Path) -> None:
    folder = make_checkpoint(tmp_path / "tiny", preset="tiny", seed=0)
    config_path = folder / "audio_dit" / "config.json"
    data = json.loads(config_path.read_text())
    data["require_clip_embedding"] = True
    config_path.write_text(json.dumps(data))
    pipe = MovaPipeline.from_pretrained(folder)
    assert pipe.component("audio_dit").config.require_clip_embedding
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    data["has_ref_conv"] = True
    (broken / "audio_dit" / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="audio_dit/config.json: has_ref_conv=true"):
        MovaPipeline.from_pretrained(broken)


NAN = float("nan")
BAD_FIELDS: list[tuple[Any, Any, dict[str, Any], str]] = [
    (VideoDiTConfig, TINY.video_dit, {"dim": "96"}, "dim='96' must be int, not str"),
    (VideoDiTConfig, TINY.video_dit, {"dim": 96.0}, "dim=96.0 must be int, not float"),
    (VideoDiTConfig, TINY.video_dit, {"patch_size": None}, "patch_size=None must be a list"),
    (VideoDiTConfig, TINY.video_dit, {"num_heads": 0}, "num_heads=0 must be >= 1"),
    (VideoDiTConfig, TINY.video_dit, {"eps": "tiny"}, "eps='tiny' must be float, not str"),
    (VideoDiTConfig, TINY.video_dit, {"num_layers": True}, "num_layers=True must be int"),
    (BridgeConfig, TINY.bridge, {"head_dim": 0}, "head_dim=0 must be >= 1"),
    (AudioVAEConfig, TINY.audio_vae, {"encoder_rates": [2, 3, 0, 5, 8]},
     "encoder_rates[2]=0 must be >= 1"),
    (AudioVAEConfig, TINY.audio_vae, {"sample_rate": "48000"}, "sample_rate='48000' must be int"),
    (VideoVAEConfig, TINY.video_vae, {"base_dim": -8}, "base_dim=-8 must be >= 1"),
    (VideoVAEConfig, TINY.video_vae, {"z_dim": "16"}, "z_dim='16' must be int, not str"),
    (VideoVAEConfig, TINY.video_vae, {"latents_std": [0.0] * 16},
     "latents_std[0]=0.0 must be > 0"),
    (VideoVAEConfig, TINY.video_vae, {"latents_std": ["a"] * 16},
     "latents_std[0]='a' must be float"),
    (SchedulerConfig, TINY.scheduler, {"shift": "5"}, "shift='5' must be float, not str"),
    (SchedulerConfig, TINY.scheduler, {"shift": NAN}, "shift=nan must be finite"),
    (SchedulerConfig, TINY.scheduler, {"num_train_timesteps": 3_000_000_000},
     "num_train_timesteps=3000000000 must be in [1, 100000]"),
    (SchedulerConfig, TINY.scheduler, {"num_train_timesteps": 0},
     "num_train_timesteps=0 must be in [1, 100000]"),
    (SchedulerConfig, TINY.scheduler, {"sigma_max": -5.0, "sigma_min": 7.0},
     "sigma_max=-5.0 must be in [0, 1]"),
    (SchedulerConfig, TINY.scheduler, {"sigma_max": 0.001}, "sigma_min=0.00299"),
    (TextEncoderConfig, TINY.text_encoder, {"d_model": None}, "d_model=None must be int"),
]


@pytest.mark.parametrize(("config_cls", "tiny", "change", "message"), BAD_FIELDS)
def test_a_wrong_type_or_range_in_a_config_is_one_line_naming_file_and_field(
        tmp_path: Path, config_cls: Any, tiny: Any, change: dict[str, Any],
        message: str) -> None:
    path = _write(tmp_path / "component", {**tiny.to_config_dict(), **change})
    with pytest.raises(CheckpointError) as info:
        read_config(path.parent, config_cls)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("content", [b"\xff\xfe{}", b"[1, 2]"])
def test_a_config_that_is_not_a_utf8_json_object_is_named(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError) as info:
        read_config(tmp_path, VideoDiTConfig)
    assert str(info.value).startswith(f"{tmp_path / 'config.json'}: ")
    assert "not UTF-8 text" in str(info.value) or "expected a JSON object" in str(info.value)


def test_every_preset_passes_its_own_checks() -> None:
    for name in ("tiny", "mova-360p", "mova-720p"):
        preset = get_preset(name)
        assert dataclasses.replace(preset) == preset


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def _edited(checkpoint: Path, folder: Path, file: str, **changes: Any) -> Path:
    shutil.copytree(checkpoint, folder)
    path = folder / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    return folder


@pytest.mark.parametrize(("change", "message"), [
    ({"boundary_ratio": "high"}, "boundary_ratio='high' must be float, not str"),
    ({"boundary_ratio": 5}, "boundary_ratio=5 must be in (0, 1]"),
    ({"boundary_ratio": NAN}, "boundary_ratio=nan must be finite"),
    ({"audio_vae_type": "oobleck"}, "audio_vae_type='oobleck': only 'dac' is supported"),
])
def test_a_bad_model_index_field_is_refused_at_load(tiny_checkpoint: Path, tmp_path: Path,
                                                    change: dict[str, Any], message: str) -> None:
    folder = _edited(tiny_checkpoint, tmp_path / "ck", "model_index.json", **change)
    with pytest.raises(CheckpointError) as info:
        MovaPipeline.from_pretrained(folder)
    assert str(info.value) == f"{folder / 'model_index.json'}: {message}"


@pytest.mark.parametrize(("file", "change", "message"), [
    ("text_encoder/config.json", {"d_model": 64},
     "video_dit.text_dim=32 does not fit text_encoder.d_model=64"),
    ("video_vae/config.json", {"z_dim": 8, "latents_mean": [0.0] * 8, "latents_std": [1.0] * 8},
     "video_dit.out_dim=16 does not fit video_vae.z_dim=8"),
    ("audio_vae/config.json", {"sample_rate": 44100},
     "audio_vae.sample_rate=44100 does not fit the implemented rate=48000"),
    ("video_dit_2/config.json", {"text_dim": 64},
     "video_dit.text_dim=64 does not fit text_encoder.d_model=32"),
])
def test_components_that_do_not_fit_each_other_are_refused_at_load_naming_both(
        tiny_checkpoint: Path, tmp_path: Path, file: str, change: dict[str, Any],
        message: str) -> None:
    folder = _edited(tiny_checkpoint, tmp_path / "ck", file, **change)
    with pytest.raises(CheckpointError) as info:
        MovaPipeline.from_pretrained(folder)
    assert str(info.value) == f"{folder}: components do not fit each other: {message}"


def test_a_zero_training_grid_blames_the_scheduler_config_not_the_request(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    folder = _edited(tiny_checkpoint, tmp_path / "ck", "scheduler/scheduler_config.json",
                     num_train_timesteps=0)
    with pytest.raises(CheckpointError) as info:
        MovaPipeline.from_pretrained(folder)
    assert str(info.value) == (f"{folder / 'scheduler' / 'scheduler_config.json'}: "
                               "num_train_timesteps=0 must be in [1, 100000]")


def test_a_scheduler_of_another_class_is_refused_not_read_as_the_pair_scheduler(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    """A diffusers FlowMatchEulerDiscreteScheduler config also has `shift`: read as the pair
    scheduler it would sample other sigmas than the original, which builds the named class."""
    folder = _edited(tiny_checkpoint, tmp_path / "ck", "scheduler/scheduler_config.json",
                     _class_name="FlowMatchEulerDiscreteScheduler", shift=5.0)
    with pytest.raises(CheckpointError) as info:
        MovaPipeline.from_pretrained(folder)
    assert str(info.value) == (
        f"{folder / 'scheduler' / 'scheduler_config.json'}: "
        "_class_name='FlowMatchEulerDiscreteScheduler': MOVA samples with FlowMatchPairScheduler "
        "only (its pair schedule); this folder's scheduler is another")
    # without _class_name (hand-written configs) the folder still loads
    folder = _edited(tiny_checkpoint, tmp_path / "ck2", "scheduler/scheduler_config.json")
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items()
                                  if k != "_class_name"}))
    MovaPipeline.from_pretrained(folder)


def test_a_bridge_config_without_its_visual_layer_count_loads_as_in_the_original(
        tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Absent, `visual_layers` takes the constructor's 30 (spec §13.1). The original builds
    the conditioners for min(30, audio_layers) layers and runs those the towers share: the
    same bridge as the folder's own count gives (it was refused here: 30 != 3 video blocks)."""
    folder = _edited(tiny_checkpoint, tmp_path / "ck", "dual_tower_bridge/config.json")
    config = folder / "dual_tower_bridge" / "config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items()
                                  if k != "visual_layers"}))
    bridge = MovaPipeline.from_pretrained(folder).component("dual_tower_bridge")
    original = MovaPipeline.from_pretrained(tiny_checkpoint).component("dual_tower_bridge")
    assert bridge.config.visual_layers == 30  # type: ignore[union-attr]
    assert bridge.layers == original.layers == [0, 1]  # type: ignore[union-attr]
    for key, value in original.state_dict().items():
        assert torch.equal(bridge.state_dict()[key], value)

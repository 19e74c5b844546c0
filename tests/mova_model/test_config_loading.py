"""Every config.json the original MOVA code loads, loads here too (spec §13.1).

Flags that add no tensor upstream are accepted whatever their value; absent fields take the
upstream constructor's default (not the release value); flags that build layers MOVA lacks fail
with the flag's name and the file's path.
"""

from __future__ import annotations

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
    VideoDiTConfig,
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
@pytest.mark.parametrize("values", list(itertools.product([False, True],
                                                          repeat=len(INERT_DIT_FLAGS))))
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

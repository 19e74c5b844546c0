"""Joint forward contract: a bridge built for towers of other widths is refused with the field
that differs, one whose layer counts differ from the towers' runs the layers they share, an
audio tower deeper than the video tower stops at the video tower's depth, bridge
λ accepts a float, a 0-d tensor or one value per sample and nothing else, and λ = 0 in any of
those forms means the towers run alone."""

from __future__ import annotations

import pytest
import torch

from mova_model.audio_dit import AudioDiT
from mova_model.bridge import DualTowerBridge
from mova_model.config import get_preset
from mova_model.errors import ConfigError, InvalidRequest
from mova_model.joint import joint_forward
from tests.mova_model.tiny_models import randomize_, rel_err, tiny_inputs, tiny_models

TINY_BRIDGE = get_preset("tiny").bridge


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("visual_hidden_dim", 120, 96), ("audio_hidden_dim", 72, 48)])
@torch.no_grad()
def test_a_bridge_for_other_towers_is_refused(field: str, value: int, expected: int) -> None:
    video, audio, _ = tiny_models()
    other = DualTowerBridge(TINY_BRIDGE.replace(**{field: value})).eval()
    randomize_(other, 9)
    with pytest.raises(ConfigError) as info:
        joint_forward(video, audio, other, **tiny_inputs(), video_fps=24.0)
    assert str(info.value) == f"bridge.{field}={value} does not match the towers ({expected})"


@torch.no_grad()
def test_bridge_scale_forms() -> None:
    video, audio, bridge = tiny_models()
    inputs = tiny_inputs(batch=2, seed=1)
    alone = joint_forward(video, audio, None, **inputs, video_fps=24.0)
    half = joint_forward(video, audio, bridge, **inputs, video_fps=24.0, bridge_scale=0.5)
    full = joint_forward(video, audio, bridge, **inputs, video_fps=24.0, bridge_scale=1.0)
    assert rel_err(half[0], full[0]) > 1e-4 and rel_err(half[0], alone[0]) > 1e-4
    for zero in (0.0, 0, torch.tensor(0.0), torch.zeros(2)):
        out = joint_forward(video, audio, bridge, **inputs, video_fps=24.0, bridge_scale=zero)
        torch.testing.assert_close(out, alone, rtol=0, atol=1e-6)
    for same in (torch.tensor(0.5), torch.full((2,), 0.5)):
        out = joint_forward(video, audio, bridge, **inputs, video_fps=24.0, bridge_scale=same)
        torch.testing.assert_close(out, half, rtol=1e-5, atol=1e-6)
    # the default λ is 1 (the release's bridge at full strength)
    default = joint_forward(video, audio, bridge, **inputs, video_fps=24.0)
    torch.testing.assert_close(default, full, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(3,), (2, 1), (1,)])
@torch.no_grad()
def test_a_bridge_scale_of_the_wrong_shape_is_refused(shape: tuple[int, ...]) -> None:
    video, audio, bridge = tiny_models()
    with pytest.raises(InvalidRequest) as info:
        joint_forward(video, audio, bridge, **tiny_inputs(batch=2), video_fps=24.0,
                      bridge_scale=torch.ones(shape))
    assert str(info.value) == f"bridge_scale has shape {shape}; expected (2,)"


@torch.no_grad()
def test_bfloat16_towers_take_float32_inputs_and_return_float32() -> None:
    """Inputs and a per-sample λ are cast to the towers' dtype (bf16 on GPUs); the result is
    upcast to float32 and close to the float32 forward."""
    video, audio, bridge = tiny_models()
    inputs = tiny_inputs(batch=2, seed=6)
    scale = torch.tensor([0.5, 1.0])
    expected = joint_forward(video, audio, bridge, **inputs, video_fps=24.0, bridge_scale=scale)
    for module in (video, audio, bridge):
        module.to(torch.bfloat16)
    found = joint_forward(video, audio, bridge, **inputs, video_fps=24.0, bridge_scale=scale)
    for f, e in zip(found, expected, strict=True):
        assert f.dtype == torch.float32
        assert rel_err(f, e) < 0.05


@torch.no_grad()
def test_a_taller_audio_tower_stops_at_the_video_towers_depth() -> None:
    """As in spec §4.4's loop and the original's pipeline, only the video tower runs past the
    shared depth: an audio tower deeper than the video tower never runs its extra blocks, so
    unbridged its output is that of its first blocks alone."""
    cfg = get_preset("tiny")
    video, _, _ = tiny_models()
    audio = AudioDiT(cfg.audio_dit.replace(num_layers=5))
    randomize_(audio, 4)
    audio.eval()
    inputs = tiny_inputs(batch=1, seed=7)
    out_v, out_a = joint_forward(video, audio, None, **inputs, video_fps=24.0)
    full_a = audio(inputs["audio_input"], inputs["context"], inputs["t_audio"])
    audio.blocks = audio.blocks[: len(video.blocks)]
    shallow_a = audio(inputs["audio_input"], inputs["context"], inputs["t_audio"])
    alone_v = video(inputs["video_input"], inputs["context"], inputs["t_video"])
    torch.testing.assert_close(out_a, shallow_a, rtol=0, atol=0)
    assert rel_err(out_a, full_a) > 1e-3
    torch.testing.assert_close(out_v, alone_v, rtol=0, atol=0)


@pytest.mark.parametrize(("visual_layers", "audio_layers"), [(30, 30), (40, 30), (3, 8)])
@torch.no_grad()
def test_a_bridge_whose_layer_counts_differ_from_the_towers_runs_the_shared_layers(
        visual_layers: int, audio_layers: int) -> None:
    """The original builds the conditioners from the bridge's own counts (a config without
    them takes its constructor's 30) and runs those within the towers' shared depth: with the
    `full` strategy the tiny towers (3 and 2 blocks) are bridged at 0 and 1 either way."""
    video, audio, bridge = tiny_models()
    wide = DualTowerBridge(TINY_BRIDGE.replace(visual_layers=visual_layers,
                                               audio_layers=audio_layers)).eval()
    randomize_(wide, 9)
    for layer in bridge.layers:  # the conditioners both have carry the same weights
        for kind in ("audio_to_video_conditioners", "video_to_audio_conditioners"):
            getattr(wide, kind)[str(layer)].load_state_dict(
                getattr(bridge, kind)[str(layer)].state_dict())
    inputs = tiny_inputs(seed=4)
    expected = joint_forward(video, audio, bridge, **inputs, video_fps=24.0)
    torch.testing.assert_close(joint_forward(video, audio, wide, **inputs, video_fps=24.0),
                               expected, rtol=0, atol=0)

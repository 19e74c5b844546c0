"""bench/bridge_timing.py: the share of bridge attention on time-aligned tokens is read right,
and the timing gain is zero exactly when the audio tower cannot see the picture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mova_model.pipeline
from bench.bridge_timing import NUM_LATENT_FRAMES, AlignedMass, timing_gain, voice_given
from bench.content import generate
from mova_model.bridge import Conditioner, DualTowerBridge
from mova_model.checkpoint import load_component, save_component
from mova_model.config import BridgeConfig, get_preset
from mova_model.make_checkpoint import make_checkpoint
from mova_model.pipeline import MovaPipeline, _ExpertDenoiser
from training.dit import start_bridge_on_time

AUDIO_LEN = 53  # the demo world's 25 frames at 24 fps in DAC steps (50 per second)
TOKENS_PER_FRAME = 28


def _exchange(bridge: DualTowerBridge, seed: int) -> AlignedMass:
    mass = AlignedMass(bridge)
    config = bridge.config
    generator = torch.Generator().manual_seed(seed)
    video = torch.randn(1, NUM_LATENT_FRAMES * TOKENS_PER_FRAME, config.visual_hidden_dim,
                        generator=generator)
    audio = torch.randn(1, AUDIO_LEN, config.audio_hidden_dim, generator=generator)
    rope_v, rope_a = bridge.aligned_rope((NUM_LATENT_FRAMES, 4, 7), AUDIO_LEN, 24.0,
                                         torch.float32, torch.device("cpu"))
    with torch.no_grad():
        for layer in bridge.layers:
            bridge.exchange(layer, video, audio, rope_v, rope_a)
    return mass


def _read_time_only(bridge: DualTowerBridge) -> None:
    """q and k of every bridge attention made constant in the RoPE pairs that turn by 0.2, 0.1
    and 0.05 rad per audio step (zero elsewhere): the scores then depend on the time gap alone,
    largest at none."""
    with torch.no_grad():
        for conditioner in bridge.modules():
            if isinstance(conditioner, Conditioner):  # no content left in q and k
                for projection in (conditioner.inner.q, conditioner.inner.k):
                    projection.weight.zero_()
                    projection.bias.zero_()
    # only 3 of each 24-wide head's dimensions are then non-zero (1/8 of the width): 1 becomes
    # sqrt(8) after the norm, 3 after its scale
    start_bridge_on_time(bridge, pairs=(2, 3, 4), offset=1.0, gain=3.0 / 8 ** 0.5)


@pytest.fixture
def bridge() -> DualTowerBridge:
    torch.manual_seed(0)
    return DualTowerBridge(get_preset("tiny").bridge)


def test_a_bridge_that_ignores_time_scores_about_one_frame_in_seven(
        bridge: DualTowerBridge) -> None:
    with torch.no_grad():
        for conditioner in bridge.modules():
            if isinstance(conditioner, Conditioner):  # scores from content alone
                conditioner.inner.norm_q.weight.mul_(0.0)
    shares = _exchange(bridge, seed=1).shares
    assert set(shares) == {f"{d}.{i}" for d in ("video_to_audio", "audio_to_video")
                           for i in bridge.layers}
    for values in shares.values():
        assert values[0] == pytest.approx(1 / NUM_LATENT_FRAMES, abs=0.02)


def test_a_bridge_that_reads_its_own_time_scores_high(bridge: DualTowerBridge) -> None:
    _read_time_only(bridge)
    for key, values in _exchange(bridge, seed=1).shares.items():
        assert values[0] > 0.5, key


@pytest.mark.slow
def test_timing_gain_is_zero_exactly_when_the_audio_cannot_see_the_picture(
        tmp_path: Path) -> None:
    folder = make_checkpoint(tmp_path / "tiny", preset="tiny", seed=0)
    seeing = timing_gain(folder, num_clips=4)
    assert seeing["timing_gain"] != 0.0  # random weights: the picture reaches the audio
    assert seeing["audio_loss_true"] > 0
    bridge, config = load_component(folder / "dual_tower_bridge", BridgeConfig,
                                     DualTowerBridge)
    with torch.no_grad():
        for conditioner in bridge.video_to_audio_conditioners.values():
            conditioner.inner.o.weight.zero_()
            conditioner.inner.o.bias.zero_()
    save_component(bridge, config, folder / "dual_tower_bridge")
    blind = timing_gain(folder, num_clips=4)
    assert blind["timing_gain"] == 0.0
    assert blind["audio_loss_true"] == blind["audio_loss_rolled"]


def test_a_bridge_started_on_time_reads_its_own_frame_and_keeps_its_layout(
        bridge: DualTowerBridge) -> None:
    """The demo recipe's start (training.dit.start_bridge_on_time): most of each attention on
    its own latent frame from the first step, where a random bridge spreads it over all."""
    keys = {name: tensor.shape for name, tensor in bridge.state_dict().items()}
    spread = _exchange(bridge, seed=1).shares
    start_bridge_on_time(bridge)
    on_time = _exchange(bridge, seed=1).shares
    for key, values in on_time.items():
        assert spread[key][0] < 0.2, key
        assert values[0] > 0.8, key
    assert {name: tensor.shape for name, tensor in bridge.state_dict().items()} == keys


def test_a_given_voice_reaches_the_towers_at_each_steps_noise_level_and_leaves_no_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """picture_sync's sampling: the audio tower sees the given voice noised to the step's level
    (the rest of it is noise of that size), the bridge at the asked strength; afterwards, or
    after an error, the pipeline samples as before."""
    pipe = MovaPipeline.from_pretrained(make_checkpoint(tmp_path / "tiny", preset="tiny"))
    seen: list[tuple[torch.Tensor, float, object]] = []
    forward = mova_model.pipeline.joint_forward

    def recording(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        audio_input, t_audio, bridge_scale = args[4], args[7], args[9]
        assert isinstance(audio_input, torch.Tensor) and isinstance(t_audio, torch.Tensor)
        seen.append((audio_input.clone(), float(t_audio[0]), bridge_scale))
        return forward(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(mova_model.pipeline, "joint_forward", recording)
    channels = pipe.audio_vae_config.latent_dim
    assert channels is not None
    voice = 3 * torch.randn(1, channels, AUDIO_LEN,
                            generator=torch.Generator().manual_seed(5))
    original = _ExpertDenoiser.__call__
    with voice_given(pipe, voice, seed=0, bridge_factor=0.0):
        generate(pipe, "A red face on a blue background says \"ba\".", seed=0, steps=4,
                 cfg_scale=3.0)
    assert _ExpertDenoiser.__call__ is original
    assert len(seen) == 2 * 4  # two guidance passes a step
    for (audio, t_audio, bridge_scale), (other, t_other, _) in zip(seen[::2], seen[1::2],
                                                                   strict=True):
        assert t_other == t_audio and torch.equal(other, audio)  # the same voice for both
        sigma = float(pipe.scheduler.sigma_for(t_audio))
        rest = audio[0] - (1 - sigma) * voice[0]
        assert float(rest.std()) == pytest.approx(sigma, rel=0.1)
        assert bridge_scale == 0.0
    with pytest.raises(RuntimeError, match="inside"), voice_given(pipe, voice, 0, 1.0):
        raise RuntimeError("inside")
    assert _ExpertDenoiser.__call__ is original

"""Bridge: interaction layers per strategy, conditioner math, pre-bridge states, key layout."""

from __future__ import annotations

import pytest
import torch

from mova_model.bridge import DualTowerBridge, interaction_layers
from mova_model.config import get_preset
from mova_model.errors import ConfigError
from tests.mova_model.tiny_models import randomize_

RELEASE = {
    "shallow_focus": list(range(10)),
    "distributed": list(range(0, 30, 3)),
    "progressive": list(range(8)) + [8, 11, 14, 17, 20, 23, 26, 29],
    "custom": [0, 2, 4, 6, 8, 12, 16, 20],
    "full": list(range(30)),
}
TINY = {
    "shallow_focus": [],
    "distributed": [0],
    "progressive": [0, 1],
    "custom": [0],
    "full": [0, 1],
}


@pytest.mark.parametrize("strategy", sorted(RELEASE))
def test_interaction_layers(strategy: str) -> None:
    assert interaction_layers(strategy, 40, 30) == RELEASE[strategy]
    assert interaction_layers(strategy, 3, 2) == TINY[strategy]


def test_unknown_strategy() -> None:
    with pytest.raises(ConfigError, match="sparse"):
        interaction_layers("sparse", 40, 30)


def tiny_bridge(**changes: object) -> DualTowerBridge:
    bridge = DualTowerBridge(get_preset("tiny").bridge.replace(**changes))
    randomize_(bridge, seed=31)
    return bridge.eval()


def test_conditioners_follow_strategy() -> None:
    bridge = tiny_bridge(interaction_strategy="distributed")
    assert bridge.layers == [0]
    assert set(bridge.audio_to_video_conditioners) == {"0"}
    assert len(tiny_bridge().state_dict()) == 2 * 2 * 12


@torch.no_grad()
def test_exchange_reads_pre_bridge_states() -> None:
    bridge = tiny_bridge()
    gen = torch.Generator().manual_seed(0)
    video, audio = torch.randn(1, 12, 96, generator=gen), torch.randn(1, 7, 48, generator=gen)
    rope_v, rope_a = bridge.aligned_rope((2, 2, 3), 7, 24.0, torch.float32, torch.device("cpu"))
    new_v, new_a = bridge.exchange(1, video, audio, rope_v, rope_a, scale=0.5)
    a2v, v2a = bridge.audio_to_video_conditioners["1"], bridge.video_to_audio_conditioners["1"]
    dv = a2v(video, audio, rope_v, rope_a)
    da = v2a(audio, video, rope_a, rope_v)  # video from before the a2v update
    torch.testing.assert_close(new_v, video + 0.5 * dv)
    torch.testing.assert_close(new_a, audio + 0.5 * da)


@torch.no_grad()
def test_conditioner_normalises_only_the_condition() -> None:
    bridge = tiny_bridge(apply_cross_rope=False)
    assert bridge.aligned_rope((2, 2, 3), 7, 24.0, torch.float32, torch.device("cpu")) == (
        None,
        None,
    )
    cond = bridge.audio_to_video_conditioners["0"]
    x, y = torch.randn(1, 4, 96), torch.randn(1, 3, 48)
    expected = cond.inner(x, cond.y_norm(y))
    torch.testing.assert_close(cond(x, y, None, None), expected)
    # x enters unnormalised: scaling x changes the output (LayerNorm would cancel it)
    assert not torch.allclose(cond(3 * x, y, None, None), expected)

"""Analytic FLOPs (spec §10) against the spec's table and against a counted tiny forward."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from mova_model.audio_dit import AudioDiT
from mova_model.config import get_preset
from mova_model.errors import ConfigError
from mova_model.flops import ForwardFlops, guided_step_flops, joint_forward_flops
from mova_model.joint import joint_forward
from mova_model.layers import blas_linear
from mova_model.padded_text import kept_rows
from tests.mova_model.tiny_models import tiny_inputs, tiny_models

TFLOP = 1e12
L_V_360, L_V_720, L_A, L_T = 43_120, 176_400, 403, 512
BENCH = Path(__file__).resolve().parents[2] / "bench" / "model_step.py"


def _tflop(value: float, digits: int = 1) -> float:
    """Value in TFLOP rounded as printed in the spec's table."""
    return round(value / TFLOP, digits)


@pytest.fixture(scope="module")
def release() -> tuple[ForwardFlops, ForwardFlops]:
    cfg = get_preset("mova-360p")
    return (
        joint_forward_flops(cfg, L_V_360, L_A, L_T),
        joint_forward_flops(cfg, L_V_720, L_A, L_T),
    )


# Spec §10 table: (row, TFLOP as printed, digits) and the two percentage columns.
TABLE = {
    "360p": {"video_linear": (1030.9, 1), "video_self_attn_core": (1523.2, 1),
             "video_text_cross": (20.2, 1), "audio_tower": (1.22, 2), "bridge_linear": (176.8, 1),
             "bridge_core": (13.9, 1), "total": (2766.4, 1), "percent": (37.3, 55.1)},
    "720p": {"video_linear": (4217.3, 1), "video_self_attn_core": (25491.0, 1),
             "video_text_cross": (76.1, 1), "audio_tower": (1.22, 2), "bridge_linear": (721.9, 1),
             "bridge_core": (56.8, 1), "total": (30564.7, 1), "percent": (13.8, 83.4)},
}


@pytest.mark.parametrize("resolution", ["360p", "720p"])
def test_spec_table_rows(release: tuple[ForwardFlops, ForwardFlops], resolution: str) -> None:
    flops = release[0] if resolution == "360p" else release[1]
    expected = TABLE[resolution]
    for row, (value, digits) in expected.items():
        if row != "percent":
            assert _tflop(getattr(flops, row), int(digits)) == value, row
    assert 0 < flops.embeddings < 0.5 * TFLOP
    assert flops.total == pytest.approx(expected["total"][0] * TFLOP, rel=1e-3)
    # the embeddings row is what brings the total to the printed value
    assert _tflop(flops.total - flops.embeddings) != expected["total"][0] or resolution == "360p"
    linear_pct, attention_pct = expected["percent"]
    assert round(100 * flops.video_linear / flops.total, 1) == linear_pct
    assert round(100 * flops.video_self_attn_core / flops.total, 1) == attention_pct


def test_guided_step_and_50_steps() -> None:
    cfg = get_preset("mova-720p")
    s360 = guided_step_flops(cfg, L_V_360, L_A, L_T, branches=2)
    s720 = guided_step_flops(cfg, L_V_720, L_A, L_T, branches=2)
    assert _tflop(s360.total) == 5532.7
    assert _tflop(s720.total) == 61129.5
    assert s360.total == pytest.approx(5532.7 * TFLOP, rel=1e-3)
    assert s720.total == pytest.approx(61129.5 * TFLOP, rel=1e-3)
    assert round(50 * s360.total / 1e15, 1) == 276.6
    assert round(50 * s720.total / 1e15, 1) == 3056.5
    one = joint_forward_flops(cfg, L_V_360, L_A, L_T)
    assert guided_step_flops(cfg, L_V_360, L_A, L_T, branches=1) == one
    assert guided_step_flops(cfg, L_V_360, L_A, L_T, branches=3).total == pytest.approx(
        3 * one.total
    )


def test_bridge_pairs_and_dual_cfg() -> None:
    cfg = get_preset("mova-360p")
    full = joint_forward_flops(cfg, L_V_360, L_A, L_T)
    off = joint_forward_flops(cfg, L_V_360, L_A, L_T, bridge_pairs=0)
    assert off.bridge_linear == off.bridge_core == 0
    assert off.video_linear == full.video_linear and off.audio_tower == full.audio_tower
    # spec §7.5: a bridge-off pass saves about 7 % of a 360p forward
    assert round(1 - off.total / full.total, 2) == 0.07
    # dual CFG: one bridged pass, two bridge-free passes
    dual = guided_step_flops(cfg, L_V_360, L_A, L_T, branches=3, bridged_branches=1)
    assert dual.total == pytest.approx(full.total + 2 * off.total)
    assert dual.bridge_linear == full.bridge_linear
    # fewer interaction layers scale the bridge rows only
    cfg_d = dataclasses.replace(cfg, bridge=cfg.bridge.replace(interaction_strategy="distributed"))
    part = joint_forward_flops(cfg_d, L_V_360, L_A, L_T)
    assert part.bridge_core == pytest.approx(full.bridge_core * 10 / 30)
    assert part.video_linear == full.video_linear


def test_invalid_arguments() -> None:
    cfg = get_preset("tiny")
    with pytest.raises(ConfigError, match="bridge_pairs=3 exceeds"):
        joint_forward_flops(cfg, 10, 10, 8, bridge_pairs=3)
    with pytest.raises(ConfigError, match="video_tokens=-1"):
        joint_forward_flops(cfg, -1, 10, 8)
    with pytest.raises(ConfigError, match="bridged_branches=3"):
        guided_step_flops(cfg, 10, 10, 8, branches=2, bridged_branches=3)
    with pytest.raises(ConfigError, match="branches=0"):
        guided_step_flops(cfg, 10, 10, 8, branches=0)


@pytest.mark.parametrize("with_bridge", [True, False])
def test_matches_counted_tiny_forward(with_bridge: bool) -> None:
    """Every matmul/conv/attention FLOP of a real tiny forward is in the analytic count."""
    video, audio, bridge = tiny_models()
    x = tiny_inputs(frames=3, height=4, width=6, audio_len=10, text_len=8)
    # math SDPA decomposes into bmm and BLAS linears are addmm, which the counter sees (the
    # fused attention kernel and oneDNN's product it does not)
    with (torch.no_grad(), sdpa_kernel(SDPBackend.MATH), blas_linear(),
          FlopCounterMode(display=False) as fc):
        joint_forward(
            video, audio, bridge if with_bridge else None, x["video_input"], x["audio_input"],
            x["context"], x["t_video"], x["t_audio"], video_fps=24.0,
        )  # fmt: skip
    video_tokens = 3 * 2 * 3  # (F, H/2, W/2)
    pairs = None if with_bridge else 0
    # 8 text rows: padding is folded in blocks of 32 rows (mova_model/padded_text.py), so none
    expected = joint_forward_flops(get_preset("tiny"), video_tokens, 10, 8, bridge_pairs=pairs)
    assert fc.get_total_flops() == expected.total


def test_a_deeper_audio_tower_counts_only_the_blocks_that_run() -> None:
    """Audio blocks past the video tower's depth never run (spec §4.4), so they are not
    counted: the count still equals the counted forward."""
    cfg = get_preset("tiny")
    deep = dataclasses.replace(cfg, audio_dit=cfg.audio_dit.replace(num_layers=5))
    video, _, bridge = tiny_models()
    audio = AudioDiT(deep.audio_dit).eval()
    x = tiny_inputs(frames=3, height=4, width=6, audio_len=10, text_len=8)
    with (torch.no_grad(), sdpa_kernel(SDPBackend.MATH), blas_linear(),
          FlopCounterMode(display=False) as fc):
        joint_forward(video, audio, bridge, x["video_input"], x["audio_input"], x["context"],
                      x["t_video"], x["t_audio"], video_fps=24.0)
    expected = joint_forward_flops(deep, 3 * 2 * 3, 10, 8)
    assert fc.get_total_flops() == expected.total
    as_deep_as_video = dataclasses.replace(cfg, audio_dit=cfg.audio_dit.replace(num_layers=3))
    assert expected == joint_forward_flops(as_deep_as_video, 3 * 2 * 3, 10, 8)


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_model_step", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_bench_token_counts_match_spec() -> None:
    bench = _load_bench()
    cfg = get_preset("mova-360p")
    assert bench.token_counts(cfg, 352, 640, 193, 24.0) == ((49, 44, 80), L_V_360, L_A)
    assert bench.token_counts(cfg, 720, 1280, 193, 24.0) == ((49, 90, 160), L_V_720, L_A)
    assert bench.token_counts(bench.mid_config(), 128, 224, 25, 24.0)[1:] == (784, 53)
    with pytest.raises(ValueError, match="frames=24 must be 1 mod 4"):
        bench.token_counts(cfg, 352, 640, 24, 24.0)


def test_bench_refuses_release_preset_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load_bench()
    with pytest.raises(SystemExit) as exc:
        bench.main(["--preset", "mova-360p", "--device", "cpu"])
    assert exc.value.code == 2
    assert "refusing to run it on the CPU" in capsys.readouterr().err


def test_bench_tiny_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load_bench()
    argv = ["--preset", "tiny", "--height", "64", "--width", "112", "--frames", "25"]
    assert bench.main([*argv, "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    expected_keys = {
        "preset", "config", "height", "width", "frames", "fps", "video_latent", "L_v", "L_a",
        "L_t", "text_keys", "dtype", "device", "cpu_linear", "warmup", "repeats", "flops", "time_s",
        "flops_per_s",
        "peak_memory_bytes", "peak_memory_source", "machine", "gemm_flops_per_s",
        "forward_fraction_of_gemm",
    }  # fmt: skip
    assert set(result) == expected_keys
    assert result["cpu_linear"] == "onednn"
    assert (result["L_v"], result["L_a"], result["video_latent"]) == (196, 53, [7, 8, 14])
    cfg = get_preset("tiny")
    # the keys the forward computes: 24 prompt rows, the padding folded (kept_rows)
    forward = joint_forward_flops(cfg, 196, 53, kept_rows(24, cfg.text_encoder.text_len))
    assert result["flops"]["forward"] == forward.total
    assert result["flops"]["guided_step"] == 2 * forward.total
    for key in ("forward", "guided_step"):
        assert result["time_s"][key] > 0
        assert result["flops_per_s"][key] == pytest.approx(
            result["flops"][key] / result["time_s"][key]
        )
    assert result["gemm_flops_per_s"] > 0
    assert result["forward_fraction_of_gemm"] == pytest.approx(
        result["flops_per_s"]["forward"] / result["gemm_flops_per_s"])
    assert result["config"]["video_dit"]["dim"] == cfg.video_dit.dim
    assert result["config"]["bridge"]["pairs"] == 2
    assert result["peak_memory_bytes"] > 0 and "ru_maxrss" in result["peak_memory_source"]
    assert set(result["machine"]) >= {"cpu_model", "cpu_cores", "torch_version", "gpu"}

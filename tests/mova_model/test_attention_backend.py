"""Attention backend choice (release order FA3 > FA2 > Sage > SDPA), routing, env, compile."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from mova_model.attention import (
    FLASH_ATTN_2,
    FLASH_ATTN_3,
    KERNEL_MODULES,
    SAGE,
    installed_kernels,
    sdpa_kernel,
    select_attention_backend,
)
from mova_model.errors import ConfigError
from mova_model.joint import joint_forward
from mova_model.layers import Attention, set_attention_kernel
from mova_model.make_checkpoint import make_checkpoint
from mova_model.pipeline import MovaPipeline
from tests.mova_model.tiny_models import tiny_inputs, tiny_models

CUDA, CPU = torch.device("cuda"), torch.device("cpu")
ALL = frozenset({FLASH_ATTN_3, FLASH_ATTN_2, SAGE})


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        (ALL, FLASH_ATTN_3),
        (frozenset({FLASH_ATTN_2, SAGE}), FLASH_ATTN_2),
        (frozenset({SAGE}), SAGE),
        (frozenset(), "sdpa"),
    ],
)
def test_auto_follows_the_release_order_on_cuda_bf16(installed: frozenset[str],
                                                     expected: str) -> None:
    assert select_attention_backend("auto", CUDA, torch.bfloat16, installed).name == expected


@pytest.mark.parametrize(("device", "dtype"), [(CPU, torch.bfloat16), (CUDA, torch.float32),
                                               (CPU, torch.float32)])
def test_auto_falls_back_to_sdpa_where_the_kernels_cannot_run(device: torch.device,
                                                              dtype: torch.dtype) -> None:
    backend = select_attention_backend("auto", device, dtype, ALL)
    assert backend.name == "sdpa" and backend.kernel is sdpa_kernel


def test_explicit_requests() -> None:
    assert select_attention_backend("flash", CUDA, torch.float16,
                                    frozenset({FLASH_ATTN_2})).name == FLASH_ATTN_2
    assert select_attention_backend("sage", CUDA, torch.bfloat16, ALL).name == SAGE
    assert select_attention_backend("sdpa", CUDA, torch.bfloat16, ALL).name == "sdpa"
    with pytest.raises(ConfigError, match="flash_attn_interface or flash_attn"):
        select_attention_backend("flash", CUDA, torch.bfloat16, frozenset({SAGE}))
    with pytest.raises(ConfigError, match="device=cpu"):
        select_attention_backend("sage", CPU, torch.bfloat16, ALL)
    with pytest.raises(ConfigError, match="expected one of auto, sdpa, flash, sage"):
        select_attention_backend("xformers", CUDA, torch.bfloat16, ALL)


def test_this_machine_really_falls_back() -> None:
    found = installed_kernels()
    assert found <= set(KERNEL_MODULES)
    assert select_attention_backend("auto", CPU, torch.float32).name == "sdpa"


def test_sdpa_kernel_is_softmax_attention() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 3, 8, generator=gen, dtype=torch.float64) for n in (5, 7, 7))
    scores = torch.einsum("bqnd,bknd->bnqk", q, k) / math.sqrt(8)
    expected = torch.einsum("bnqk,bknd->bqnd", scores.softmax(-1), v)
    assert torch.allclose(sdpa_kernel(q, k, v), expected, atol=1e-12)


def test_every_attention_goes_through_the_set_kernel() -> None:
    video, audio, bridge = tiny_models()
    calls: list[tuple[int, ...]] = []

    def counting(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        calls.append(tuple(q.shape))
        return sdpa_kernel(q, k, v)

    changed = sum(set_attention_kernel(m, counting) for m in (video, audio, bridge))
    # self + cross per block (3 video, 2 audio), a2v + v2a per bridge layer (2 layers)
    assert changed == 2 * 3 + 2 * 2 + 2 * 2
    with torch.inference_mode():
        joint_forward(video, audio, bridge, **tiny_inputs(), video_fps=24.0)  # type: ignore[arg-type]
    assert len(calls) == changed


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def _kernels(pipe: MovaPipeline) -> set[object]:
    return {m.kernel for name in ("video_dit", "video_dit_2", "audio_dit", "dual_tower_bridge")
            for m in pipe.component(name).modules() if isinstance(m, Attention)}


def test_pipeline_reads_mova_attention_once_and_records_the_choice(
        checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVA_ATTENTION", "sdpa")
    pipe = MovaPipeline.from_pretrained(checkpoint)
    assert pipe.attention_backend == "sdpa" and _kernels(pipe) == {sdpa_kernel}
    monkeypatch.setenv("MOVA_ATTENTION", "flash")  # no FlashAttention on this machine / CPU
    with pytest.raises(ConfigError, match="attention='flash'"):
        MovaPipeline.from_pretrained(checkpoint)
    # an explicit argument wins over the environment
    assert MovaPipeline.from_pretrained(checkpoint, attention="auto").attention_backend == "sdpa"


def test_mova_compile_compiles_the_blocks(checkpoint: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOVA_COMPILE", "1")
    pipe = MovaPipeline.from_pretrained(checkpoint)
    blocks = [b for name in ("video_dit", "video_dit_2", "audio_dit")
              for b in pipe.component(name).blocks]  # type: ignore[union-attr]
    assert pipe.compile_blocks and all(b._compiled_call_impl is not None for b in blocks)
    monkeypatch.delenv("MOVA_COMPILE")
    plain = MovaPipeline.from_pretrained(checkpoint)
    assert not plain.compile_blocks
    assert all(b._compiled_call_impl is None for b in plain.component("audio_dit").blocks)  # type: ignore[union-attr]


@pytest.mark.slow
def test_compiled_blocks_give_the_eager_step(checkpoint: Path) -> None:
    eager = MovaPipeline.from_pretrained(checkpoint, compile_blocks=False)
    compiled = MovaPipeline.from_pretrained(checkpoint, compile_blocks=True)
    outs = []
    for pipe in (eager, compiled):
        with torch.inference_mode():
            outs.append(joint_forward(pipe.component("video_dit"), pipe.component("audio_dit"),  # type: ignore[arg-type]
                                      pipe.component("dual_tower_bridge"), **tiny_inputs(),  # type: ignore[arg-type]
                                      video_fps=24.0))
    for found, expected in zip(outs[1], outs[0], strict=True):
        assert float((found - expected).abs().max() / expected.abs().max()) < 1e-5


def test_the_clip_records_the_backend_that_ran(checkpoint: Path) -> None:
    from mova_model.attention import AttentionBackend
    from mova_model.request import GenerationRequest

    pipe = MovaPipeline.from_pretrained(checkpoint, attention="sdpa")
    request = GenerationRequest("A red ball.", height=32, width=32, num_frames=5,
                                num_inference_steps=2, seed=1)
    assert pipe.generate(request).params.to_dict()["attention_backend"] == "sdpa"
    # The record is read from the pipeline's backend, whatever it is called (a GPU host would
    # name flash_attn_3 here): a renamed backend running the same kernel shows up under its name.
    pipe.attention = AttentionBackend("flash_attn_2", sdpa_kernel)
    clip = pipe.generate(request)
    assert clip.params.attention_backend == "flash_attn_2"
    assert clip.params.to_dict()["lora"] is None

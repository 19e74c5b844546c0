"""Offload modes give identical outputs and stream one block at a time."""

from __future__ import annotations

import torch

from mova_model.joint import joint_forward
from mova_model.offload import enable_block_streaming, on_device
from tests.mova_model.tiny_models import tiny_inputs, tiny_models


def _joint(video, audio, bridge) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    x = tiny_inputs()
    with torch.inference_mode():
        return joint_forward(video, audio, bridge, x["video_input"], x["audio_input"],
                             x["context"], x["t_video"], x["t_audio"], 24.0)


def test_block_streaming_is_bit_identical_and_keeps_one_block_resident() -> None:
    video, audio, bridge = tiny_models(seed=0)
    expected = _joint(video, audio, bridge)
    events: list[tuple[str, str]] = []
    streams = [enable_block_streaming(video, "cpu", events=events),
               enable_block_streaming(audio, "cpu", events=events)]
    found = _joint(video, audio, bridge)
    for stream in streams:
        stream.remove()
    assert all(torch.equal(a, b) for a, b in zip(expected, found, strict=True))
    resident = 0
    for kind, _ in events:
        resident += 1 if kind == "load" else -1
        assert resident in (0, 1), f"more than one block resident: {events}"
    loads = [name for kind, name in events if kind == "load"]
    # joint order: video block i then audio block i, for the audio tower's 2 layers, then video 2
    assert loads == ["blocks.0", "blocks.0", "blocks.1", "blocks.1", "blocks.2"]
    assert len(events) == 10 and not _joint_hooks_left(video)


def _joint_hooks_left(module: torch.nn.Module) -> bool:
    return any(block._forward_pre_hooks or block._forward_hooks for block in module.blocks)


def test_component_offload_moves_only_for_the_block_and_is_identical() -> None:
    video, audio, bridge = tiny_models(seed=1)
    expected = _joint(video, audio, bridge)
    events: list[tuple[str, str]] = []
    with on_device(video, "cpu", events=events, name="video_dit"), \
            on_device(audio, "cpu", events=events, name="audio_dit"):
        found = _joint(video, audio, bridge)
    assert events == [("load", "video_dit"), ("load", "audio_dit"), ("release", "audio_dit"),
                      ("release", "video_dit")]
    assert all(torch.equal(a, b) for a, b in zip(expected, found, strict=True))

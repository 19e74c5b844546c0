"""Tower RoPE (interleaved complex pairs, 3-D split) and bridge aligned rotate-half RoPE."""

from __future__ import annotations

import math

import torch

from mova_model.rope import (
    AudioRope,
    VideoRope,
    aligned_rotaries,
    aligned_video_positions,
    apply_rotate_half,
    apply_tower_rope,
    audio_rope_table,
    rotate_half_tables,
    video_axis_dims,
    video_rope_table,
)

CPU = torch.device("cpu")


def test_video_axis_split() -> None:
    assert video_axis_dims(128) == (44, 42, 42)
    assert video_axis_dims(24) == (8, 8, 8)


def test_video_table_positions() -> None:
    f, h, w = 3, 4, 5
    table = video_rope_table((f, h, w), 128, CPU)
    assert table.shape == (60, 64) and table.dtype == torch.complex128
    angles = table.angle()
    for fi, yi, xi in [(2, 3, 4), (1, 0, 2), (0, 2, 1)]:
        token = (fi * h + yi) * w + xi  # (f, y, x) order, width fastest
        for j in (0, 1, 10):
            expect = [
                (j, fi * 10000.0 ** (-2 * j / 44)),
                (22 + j, yi * 10000.0 ** (-2 * j / 42)),
                (43 + j, xi * 10000.0 ** (-2 * j / 42)),
            ]
            for pair, angle in expect:
                wrapped = math.atan2(math.sin(angle), math.cos(angle))
                assert abs(angles[token, pair].item() - wrapped) < 1e-12


def test_audio_table_is_one_dimensional() -> None:
    table = audio_rope_table(7, 128, CPU)
    assert table.shape == (7, 64)
    expected = torch.tensor(
        [[p * 10000.0 ** (-2 * j / 128) for j in range(64)] for p in range(7)], dtype=torch.float64
    )
    torch.testing.assert_close(torch.cos(expected), table.real, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.sin(expected), table.imag, rtol=0, atol=1e-12)


def test_interleaved_pairs_rotation() -> None:
    table = audio_rope_table(3, 8, CPU)
    u = torch.zeros(1, 3, 1, 8)
    u[0, 2, 0, 2] = 1.0  # real part of pair 1 at position 2
    out = apply_tower_rope(u, table)
    angle = 2 * 10000.0 ** (-2 / 8)
    assert out.dtype == torch.float32
    assert abs(out[0, 2, 0, 2].item() - math.cos(angle)) < 1e-7
    assert abs(out[0, 2, 0, 3].item() - math.sin(angle)) < 1e-7  # adjacent channel, not +d/2
    assert out[0, 2, 0, [0, 1, 4, 5, 6, 7]].abs().max().item() == 0.0


def test_tower_tables_are_cached() -> None:
    rope = VideoRope(24)
    first = rope.table((2, 3, 4), CPU)
    assert rope.table((2, 3, 4), CPU) is first
    assert rope.table((2, 3, 5), CPU) is not first
    audio = AudioRope(24)
    assert audio.table((9,), CPU) is audio.table((9,), CPU)


def test_bridge_positions_at_24_fps() -> None:
    pos = aligned_video_positions(49, 50.0, 24.0, first_frame_bias=False, device=CPU)
    assert pos.dtype == torch.float32
    torch.testing.assert_close(pos, torch.arange(49) * (50.0 * 4 / 24.0))
    assert abs(pos[1].item() - 8.3333333) < 1e-5 and abs(pos[48].item() - 400.0) < 1e-4


def test_bridge_positions_first_frame_bias() -> None:
    pos = aligned_video_positions(3, 50.0, 24.0, first_frame_bias=True, device=CPU)
    expected = [0.0, 50.0 / 24.0, 50.0 * (1 / 24.0 + 4 / 24.0)]
    torch.testing.assert_close(pos, torch.tensor(expected))


def test_rotate_half_pairs_i_with_i_plus_half() -> None:
    cos, sin = rotate_half_tables(torch.tensor([0.0, 3.0]), 128, torch.float32)
    assert cos.shape == (2, 128)
    u = torch.zeros(1, 2, 1, 128)
    u[0, 1, 0, 5] = 1.0
    out = apply_rotate_half(u, cos, sin)
    angle = 3.0 * 10000.0 ** (-10 / 128)
    assert abs(out[0, 1, 0, 5].item() - math.cos(angle)) < 1e-6
    assert abs(out[0, 1, 0, 69].item() - math.sin(angle)) < 1e-6  # channel 5 pairs with 69
    assert out[0, 1, 0].count_nonzero().item() == 2
    torch.testing.assert_close(out[0, 0], u[0, 0])  # position 0: identity


def test_bridge_tables_cast_to_activation_dtype() -> None:
    cos, sin = rotate_half_tables(torch.arange(4.0), 128, torch.bfloat16)
    assert cos.dtype == sin.dtype == torch.bfloat16
    rot_v, rot_a = aligned_rotaries((2, 2, 3), 5, 24, 50.0, 24.0, False, torch.float32, CPU)
    q = torch.randn(1, 12, 2, 24)
    out = rot_v(q)
    # all six tokens of frame 1 share position 8.333
    cos1, sin1 = rotate_half_tables(torch.tensor([50.0 * 4 / 24.0]), 24, torch.float32)
    torch.testing.assert_close(
        out[:, 6:], apply_rotate_half(q[:, 6:], cos1.expand(6, 24), sin1.expand(6, 24))
    )
    assert rot_a(torch.randn(1, 5, 2, 24)).shape == (1, 5, 2, 24)

"""Rotary position embeddings.

Towers: complex RoPE on adjacent channel pairs (2j real, 2j+1 imaginary), tables and rotation in
float64 as the reference does. Video splits the head dim into (frame, row, column) blocks of
(d - 2*(d//3), d//3, d//3) channels; audio rotates all pairs by the token index.

Bridge: rotate-half RoPE (channel i pairs with i + d/2) on positions measured in audio latent
steps, so that video frame k and audio step k*audio_fps*4/video_fps share an angle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from functools import partial

import torch
from torch import Tensor

from mova_model.layers import Rotary, at_least_float32

ROPE_THETA = 10000.0
VAE_TEMPORAL_STRIDE = 4  # hard-coded in the reference bridge
_CACHE_SIZE = 4  # grids kept per tower (a 720p video table is ~180 MB)


# ---------------------------------------------------------------------------------------------
# Tower RoPE (complex, interleaved pairs, float64)
# ---------------------------------------------------------------------------------------------


def axis_angles(num_positions: int, axis_dim: int, device: torch.device) -> Tensor:
    """(num_positions, axis_dim/2) float64 angles pos * theta^(-2j/axis_dim)."""
    exponents = torch.arange(0, axis_dim, 2, device=device)[: axis_dim // 2].double() / axis_dim
    inv_freq = 1.0 / torch.pow(ROPE_THETA, exponents)
    return torch.outer(torch.arange(num_positions, device=device, dtype=torch.float64), inv_freq)


def video_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels per axis (frame, row, column): 44/42/42 for head_dim 128."""
    third = head_dim // 3
    return head_dim - 2 * third, third, third


def video_rope_table(grid: tuple[int, int, int], head_dim: int, device: torch.device) -> Tensor:
    """(f*h*w, head_dim/2) complex128 rotations, tokens in (f, y, x) order."""
    f, h, w = grid
    d_f, d_h, d_w = video_axis_dims(head_dim)
    angles = torch.cat(
        [
            # each axis block uses its own width in the exponent; broadcast to the full grid
            axis_angles(f, d_f, device)[:, None, None, :].expand(f, h, w, d_f // 2),
            axis_angles(h, d_h, device)[None, :, None, :].expand(f, h, w, d_h // 2),
            axis_angles(w, d_w, device)[None, None, :, :].expand(f, h, w, d_w // 2),
        ],
        dim=-1,
    )  # (f, h, w, head_dim/2)
    return torch.polar(torch.ones_like(angles), angles).reshape(f * h * w, head_dim // 2)


def audio_rope_table(length: int, head_dim: int, device: torch.device) -> Tensor:
    """(length, head_dim/2) complex128 rotations by token index."""
    angles = axis_angles(length, head_dim, device)
    return torch.polar(torch.ones_like(angles), angles)


def apply_tower_rope(u: Tensor, table: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of u (B, L, n, d) by table (L, d/2), in float64."""
    pairs = torch.view_as_complex(u.to(torch.float64).unflatten(-1, (-1, 2)))  # (B, L, n, d/2)
    rotated = torch.view_as_real(pairs * table[None, :, None, :]).flatten(-2)  # (B, L, n, d)
    return rotated.to(u.dtype)


class _TableCache(ABC):
    """Lazily built tables, kept per (grid, device); plain attributes, never module buffers."""

    def __init__(self, head_dim: int) -> None:
        self.head_dim = head_dim
        self._tables: OrderedDict[tuple[tuple[int, ...], str], Tensor] = OrderedDict()

    @abstractmethod
    def _build(self, grid: tuple[int, ...], device: torch.device) -> Tensor:
        """The complex128 table (L, head_dim/2) for a token grid."""

    def table(self, grid: tuple[int, ...], device: torch.device) -> Tensor:
        """The complex128 table for this grid, built once and reused."""
        key = (tuple(grid), str(device))
        if key in self._tables:
            self._tables.move_to_end(key)
            return self._tables[key]
        table = self._build(tuple(grid), device)
        self._tables[key] = table
        if len(self._tables) > _CACHE_SIZE:
            self._tables.popitem(last=False)
        return table

    def rotary(self, grid: tuple[int, ...], device: torch.device) -> Rotary:
        """A function applying this grid's rotation to q or k (B, L, n, d)."""
        return partial(apply_tower_rope, table=self.table(grid, device))


class VideoRope(_TableCache):
    """3-D RoPE tables over the patchified (frame, row, column) grid."""

    def _build(self, grid: tuple[int, ...], device: torch.device) -> Tensor:
        f, h, w = grid
        return video_rope_table((f, h, w), self.head_dim, device)


class AudioRope(_TableCache):
    """1-D RoPE tables over audio latent steps."""

    def _build(self, grid: tuple[int, ...], device: torch.device) -> Tensor:
        (length,) = grid
        return audio_rope_table(length, self.head_dim, device)


# ---------------------------------------------------------------------------------------------
# Bridge RoPE (rotate-half, aligned positions, float32 tables)
# ---------------------------------------------------------------------------------------------


def aligned_video_positions(
    num_frames: int,
    audio_fps: float,
    video_fps: float,
    first_frame_bias: bool,
    device: torch.device,
) -> Tensor:
    """(num_frames,) float32 position of each latent frame, in audio latent steps."""
    if not first_frame_bias:
        step = float(audio_fps) / float(video_fps / VAE_TEMPORAL_STRIDE)
        return torch.arange(num_frames, device=device, dtype=torch.float32) * step
    # frame 0 covers one pixel frame, later latent frames start 1/fps + (k-1)*4/fps seconds in
    starts = torch.zeros(num_frames, device=device, dtype=torch.float32)
    if num_frames > 1:
        later = torch.arange(num_frames - 1, device=device, dtype=torch.float32)
        latent_period_s = 1.0 / (float(video_fps) / VAE_TEMPORAL_STRIDE)
        starts[1:] = 1.0 / float(video_fps) + later * latent_period_s
    return starts * float(audio_fps)


def rotate_half_tables(
    positions: Tensor, head_dim: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """(cos, sin), each (L, head_dim): fp32 angles [p*inv_freq, p*inv_freq] cast to dtype."""
    exponents = torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim
    inv_freq = 1.0 / (ROPE_THETA**exponents)  # (d/2,) fp32
    angles = positions.float()[:, None] * inv_freq[None, :]  # (L, d/2)
    emb = torch.cat([angles, angles], dim=-1)  # (L, d)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotate_half(u: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """u * cos + R(u) * sin with R(u) = [-u_hi, u_lo]; u (B, L, n, d), cos/sin (L, d).

    Rounded once to u's dtype: the release wraps this product in torch.compile (spec §13.2),
    whose kernels compute bf16 operands (cos/sin already cast to bf16) in float32."""
    wide = at_least_float32(u)
    lo, hi = wide.chunk(2, dim=-1)
    rotated = torch.cat([-hi, lo], dim=-1)
    cos, sin = at_least_float32(cos), at_least_float32(sin)
    return (wide * cos[None, :, None, :] + rotated * sin[None, :, None, :]).to(u.dtype)


def aligned_rotaries(
    video_grid: tuple[int, int, int],
    audio_len: int,
    head_dim: int,
    audio_fps: float,
    video_fps: float,
    first_frame_bias: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[Rotary, Rotary]:
    """Bridge rotations for video tokens (B, f*h*w, n, d) and audio tokens (B, L_a, n, d)."""
    f, h, w = video_grid
    frame_pos = aligned_video_positions(f, audio_fps, video_fps, first_frame_bias, device)
    video_pos = frame_pos.repeat_interleave(h * w)  # all tokens of a frame share its position
    audio_pos = torch.arange(audio_len, device=device, dtype=torch.float32)
    cos_v, sin_v = rotate_half_tables(video_pos, head_dim, dtype)
    cos_a, sin_a = rotate_half_tables(audio_pos, head_dim, dtype)
    return (
        partial(apply_rotate_half, cos=cos_v, sin=sin_v),
        partial(apply_rotate_half, cos=cos_a, sin=sin_a),
    )


def rope_rows(rope: Rotary, start: int, stop: int) -> Rotary:
    """The same rotation for tokens start..stop-1 only: a block of the sequence (context
    parallel's queries). Every rotary here is a partial over per-token tables (L, ...)."""
    if not isinstance(rope, partial):
        raise TypeError(f"rope_rows needs a table-bound rotary, got {rope!r}")
    return partial(rope.func, *rope.args,
                   **{name: table[start:stop] for name, table in rope.keywords.items()})

"""Joint forward: parity with an independent float64 implementation of the spec, bridge switches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from mova_model.joint import joint_forward
from tests.mova_model.tiny_models import rel_err, tiny_inputs, tiny_models

# ---------------------------------------------------------------------------------------------
# Independent float64 reference, written from spec §3-§4 on raw state dicts
# ---------------------------------------------------------------------------------------------

EPS = 1e-6
THETA = 10000.0


def lin(sd: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return x @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]


def layer_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + EPS)
    return y if weight is None else y * weight + bias


def rms(x: Tensor, gain: Tensor) -> Tensor:
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + EPS) * gain


def gelu_tanh(x: Tensor) -> Tensor:
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def silu(x: Tensor) -> Tensor:
    return x / (1 + torch.exp(-x))


def sinusoid(t: Tensor, dim: int) -> Tensor:
    half = dim // 2
    rows = []
    for tb in t.tolist():
        ang = [tb * THETA ** (-k / half) for k in range(half)]
        rows.append([math.cos(a) for a in ang] + [math.sin(a) for a in ang])
    return torch.tensor(rows, dtype=torch.float64)


def rotate_pairs(u: Tensor, angles: Tensor) -> Tensor:
    """Complex rotation of adjacent pairs (2j, 2j+1); u (B, L, n, d), angles (L, d/2)."""
    c, s = torch.cos(angles)[None, :, None], torch.sin(angles)[None, :, None]
    re, im = u[..., 0::2], u[..., 1::2]
    out = torch.empty_like(u)
    out[..., 0::2] = re * c - im * s
    out[..., 1::2] = re * s + im * c
    return out


def video_angles(f: int, h: int, w: int, d: int) -> Tensor:
    d_h = d // 3
    d_f = d - 2 * d_h
    rows = []
    for fi in range(f):
        for yi in range(h):
            for xi in range(w):
                row = [fi * THETA ** (-2 * j / d_f) for j in range(d_f // 2)]
                row += [yi * THETA ** (-2 * j / d_h) for j in range(d_h // 2)]
                row += [xi * THETA ** (-2 * j / d_h) for j in range(d_h // 2)]
                rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def audio_angles(length: int, d: int) -> Tensor:
    return torch.tensor(
        [[p * THETA ** (-2 * j / d) for j in range(d // 2)] for p in range(length)],
        dtype=torch.float64,
    )


def rotate_half(u: Tensor, pos: Tensor) -> Tensor:
    d = u.shape[-1]
    inv = torch.tensor([THETA ** (-2 * j / d) for j in range(d // 2)], dtype=torch.float64)
    phi = pos[:, None] * inv[None]
    phi = torch.cat([phi, phi], -1)[None, :, None]
    r = torch.cat([-u[..., d // 2 :], u[..., : d // 2]], -1)
    return u * torch.cos(phi) + r * torch.sin(phi)


def attention(sd, p, x, y, heads, q_rot=None, k_rot=None) -> Tensor:  # noqa: ANN001
    b, lq, dim = x.shape
    q = rms(lin(sd, f"{p}.q", x), sd[f"{p}.norm_q.weight"]).reshape(b, lq, heads, -1)
    k = rms(lin(sd, f"{p}.k", y), sd[f"{p}.norm_k.weight"]).reshape(b, y.shape[1], heads, -1)
    v = lin(sd, f"{p}.v", y).reshape(b, y.shape[1], heads, -1)
    if q_rot is not None:
        q, k = q_rot(q), k_rot(k)
    scores = torch.einsum("bind,bjnd->bnij", q, k) / math.sqrt(q.shape[-1])
    out = torch.einsum("bnij,bjnd->bind", torch.softmax(scores, -1), v).reshape(b, lq, dim)
    return lin(sd, f"{p}.o", out)


def block(sd, p, x, ctx, t_mod, heads, rot) -> Tensor:  # noqa: ANN001
    m = sd[f"{p}.modulation"][0] + t_mod  # (B, 6, D)
    row = [m[:, i][:, None] for i in range(6)]
    a = layer_norm(x) * (1 + row[1]) + row[0]
    x = x + row[2] * attention(sd, f"{p}.self_attn", a, a, heads, rot, rot)
    n3 = layer_norm(x, sd[f"{p}.norm3.weight"], sd[f"{p}.norm3.bias"])
    x = x + attention(sd, f"{p}.cross_attn", n3, ctx, heads)
    f = layer_norm(x) * (1 + row[4]) + row[3]
    hidden = gelu_tanh(lin(sd, f"{p}.ffn.0", f))
    return x + row[5] * lin(sd, f"{p}.ffn.2", hidden)


def tower_prelude(sd, cfg, context, t):  # noqa: ANN001, ANN201
    e = sinusoid(t, cfg.freq_dim)
    t_emb = lin(sd, "time_embedding.2", silu(lin(sd, "time_embedding.0", e)))
    t_mod = lin(sd, "time_projection.1", silu(t_emb)).reshape(-1, 6, cfg.dim)
    ctx = lin(sd, "text_embedding.2", gelu_tanh(lin(sd, "text_embedding.0", context)))
    return t_emb, t_mod, ctx


def head(sd, x, t_emb) -> Tensor:  # noqa: ANN001
    shift = sd["head.modulation"][0, 0] + t_emb[:, None]
    scale = sd["head.modulation"][0, 1] + t_emb[:, None]
    return lin(sd, "head.head", layer_norm(x) * (1 + scale) + shift)


def reference_joint(video, audio, bridge, inputs, fps) -> tuple[Tensor, Tensor]:  # noqa: ANN001
    sv = {k: t.double() for k, t in video.state_dict().items()}
    sa = {k: t.double() for k, t in audio.state_dict().items()}
    sb = {k: t.double() for k, t in bridge.state_dict().items()}
    cv, ca, cb = video.config, audio.config, bridge.config
    xv, xa = inputs["video_input"].double(), inputs["audio_input"].double()
    context = inputs["context"].double()
    b, c, f, hh, ww = xv.shape
    h, w = hh // 2, ww // 2
    # patchify: features in (c, ph, pw) order, tokens in (f, y, x) order
    patches = xv.reshape(b, c, f, h, 2, w, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, f * h * w, -1)
    v = patches @ sv["patch_embedding.weight"].reshape(cv.dim, -1).T + sv["patch_embedding.bias"]
    a = xa.transpose(1, 2) @ sa["patch_embedding.weight"][:, :, 0].T + sa["patch_embedding.bias"]
    temb_v, tmod_v, ctx_v = tower_prelude(sv, cv, context, inputs["t_video"])
    temb_a, tmod_a, ctx_a = tower_prelude(sa, ca, context, inputs["t_audio"])
    ang_v = video_angles(f, h, w, cv.head_dim)
    ang_a = audio_angles(a.shape[1], ca.head_dim)

    def rot_v(u: Tensor) -> Tensor:
        return rotate_pairs(u, ang_v)

    def rot_a(u: Tensor) -> Tensor:
        return rotate_pairs(u, ang_a)

    pos_v = torch.tensor([k * cb.audio_fps * 4 / fps for k in range(f)]).repeat_interleave(h * w)
    pos_a = torch.arange(a.shape[1], dtype=torch.float64)

    def brot_v(u: Tensor) -> Tensor:
        return rotate_half(u, pos_v)

    def brot_a(u: Tensor) -> Tensor:
        return rotate_half(u, pos_a)

    heads_bv, heads_ba = cv.dim // cb.head_dim, ca.dim // cb.head_dim
    for i in range(cv.num_layers):
        if i < min(cv.num_layers, ca.num_layers):  # "full": every shared layer is bridged
            pa, pv = f"audio_to_video_conditioners.{i}", f"video_to_audio_conditioners.{i}"
            ya = layer_norm(a, sb[f"{pa}.y_norm.weight"], sb[f"{pa}.y_norm.bias"])
            yv = layer_norm(v, sb[f"{pv}.y_norm.weight"], sb[f"{pv}.y_norm.bias"])
            dv = attention(sb, f"{pa}.inner", v, ya, heads_bv, brot_v, brot_a)
            da = attention(sb, f"{pv}.inner", a, yv, heads_ba, brot_a, brot_v)
            v, a = v + dv, a + da
            a = block(sa, f"blocks.{i}", a, ctx_a, tmod_a, ca.num_heads, rot_a)
        v = block(sv, f"blocks.{i}", v, ctx_v, tmod_v, cv.num_heads, rot_v)
    out_v, out_a = head(sv, v, temb_v), head(sa, a, temb_a)
    # unpatchify: channel index ((ph*2 + pw)*16 + c)
    vel_v = torch.empty(b, cv.out_dim, f, hh, ww, dtype=torch.float64)
    for ph in range(2):
        for pw in range(2):
            sl = out_v[..., (ph * 2 + pw) * cv.out_dim : (ph * 2 + pw + 1) * cv.out_dim]
            vel_v[:, :, :, ph::2, pw::2] = sl.reshape(b, f, h, w, -1).permute(0, 4, 1, 2, 3)
    return vel_v, out_a.transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():  # noqa: ANN201
    return tiny_models(seed=1)


@torch.no_grad()
def test_matches_float64_reference(models) -> None:  # noqa: ANN001
    video, audio, bridge = models
    assert bridge.config.apply_cross_rope and bridge.layers == [0, 1]
    inputs = tiny_inputs(batch=1, seed=3)
    out_v, out_a = joint_forward(video, audio, bridge, **inputs, video_fps=24.0)
    ref_v, ref_a = reference_joint(video, audio, bridge, inputs, 24.0)
    assert out_v.dtype == torch.float32 and out_v.shape == (1, 16, 3, 4, 6)
    assert out_a.dtype == torch.float32 and out_a.shape == (1, 128, 10)
    assert rel_err(out_v, ref_v) <= 1e-5
    assert rel_err(out_a, ref_a) <= 1e-5
    # the bridge really matters: the bridge-off result is far from the reference
    off_v, off_a = joint_forward(video, audio, None, **inputs, video_fps=24.0)
    assert rel_err(off_v, ref_v) > 1e-3 and rel_err(off_a, ref_a) > 1e-3


@torch.no_grad()
def test_zero_scale_equals_towers_alone(models) -> None:  # noqa: ANN001
    video, audio, bridge = models
    inputs = tiny_inputs(batch=1, seed=4)
    out_v, out_a = joint_forward(video, audio, bridge, **inputs, video_fps=24.0, bridge_scale=0.0)
    alone_v = video(inputs["video_input"], inputs["context"], inputs["t_video"])
    alone_a = audio(inputs["audio_input"], inputs["context"], inputs["t_audio"])
    torch.testing.assert_close(out_v, alone_v, rtol=0, atol=0)
    torch.testing.assert_close(out_a, alone_a, rtol=0, atol=0)


@torch.no_grad()
def test_per_sample_scale_and_batch_equal_separate_runs(models) -> None:  # noqa: ANN001
    video, audio, bridge = models
    inputs = tiny_inputs(batch=2, seed=5)
    scale = torch.tensor([0.0, 1.0])
    out_v, out_a = joint_forward(video, audio, bridge, **inputs, video_fps=24.0, bridge_scale=scale)
    for i, lam in enumerate((0.0, 1.0)):
        one = {k: t[i : i + 1] for k, t in inputs.items()}
        ref_v, ref_a = joint_forward(video, audio, bridge, **one, video_fps=24.0, bridge_scale=lam)
        torch.testing.assert_close(out_v[i : i + 1], ref_v, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out_a[i : i + 1], ref_a, rtol=1e-5, atol=1e-5)
    # full bridge, batch of two == two single runs
    both_v, both_a = joint_forward(video, audio, bridge, **inputs, video_fps=24.0)
    for i in range(2):
        one = {k: t[i : i + 1] for k, t in inputs.items()}
        ref_v, ref_a = joint_forward(video, audio, bridge, **one, video_fps=24.0)
        torch.testing.assert_close(both_v[i : i + 1], ref_v, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(both_a[i : i + 1], ref_a, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_fps_changes_only_bridged_result(models) -> None:  # noqa: ANN001
    video, audio, bridge = models
    inputs = tiny_inputs(batch=1, seed=6)
    a24 = joint_forward(video, audio, bridge, **inputs, video_fps=24.0)[1]
    a12 = joint_forward(video, audio, bridge, **inputs, video_fps=12.0)[1]
    assert rel_err(a12, a24) > 1e-4
    off24 = joint_forward(video, audio, None, **inputs, video_fps=24.0)[1]
    off12 = joint_forward(video, audio, None, **inputs, video_fps=12.0)[1]
    torch.testing.assert_close(off12, off24, rtol=0, atol=0)


@torch.no_grad()
def test_tiny_forward_at_the_bench_size_keeps_the_latent_shapes(models) -> None:  # noqa: ANN001
    """The size bench/model_step.py times (its wall clock is a benchmark, not a test)."""
    video, audio, bridge = models
    # 25 frames 64x112 at 24 fps: F_lat 7, latent 8x14, L_a 53, L_t 512
    inputs = tiny_inputs(frames=7, height=8, width=14, audio_len=53, text_len=512, text_rows=20)
    out_v, out_a = joint_forward(video, audio, bridge, **inputs, video_fps=24.0)
    assert out_v.shape == (1, 16, 7, 8, 14) and out_a.shape == (1, 128, 53)
    assert torch.isfinite(out_v).all() and torch.isfinite(out_a).all()

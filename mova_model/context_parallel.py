"""Context parallel for the joint step (spec §13.4): N ranks share the video and audio tokens.

Each rank keeps a contiguous 1/N of each modality's tokens (zero-padded at the end to a multiple
of N) through the blocks. Attentions that need the whole sequence use Ulysses: an all-to-all
turns (B, L/N, n, d) sequence shards into (B, L, n/N, d) head shards, the attention runs over
all tokens for n/N heads, and a second all-to-all turns the result back. That covers the towers'
self-attention and the bridge's a2v / v2a cross-attentions; text cross-attention stays local
(every rank has the whole text). Before the heads the tokens are all-gathered.

Padding. The original zero-pads too but lets the padded tokens take part in attention as keys
(spec §11.7), so its CP results drift from single-GPU ones. Here the padded rows are dropped after
the all-to-all, before RoPE and the kernel: they are masked out of every key set, and outputs
equal one rank's up to float rounding. RoPE is applied after the exchange with the full tables:
the rotation depends on the token only (the same for every head), so a head shard of the full
sequence takes exactly the rotation a sequence shard would, without splitting the tables.

Ulysses only (the release combines Ulysses degree min(N, 4) with ring attention for the rest):
every replaced attention's head count must divide by N, else `check_heads` says which does not.
Collectives: gloo on the CPU, NCCL on CUDA; inference only (no autograd through them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from mova_model.attention import AttentionKernel
from mova_model.errors import ConfigError
from mova_model.layers import Attention, AttentionCore, Rotary, attention_core

VIDEO, AUDIO = "video", "audio"


def default_backend(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU tensors."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_context_parallel(rank: int, world_size: int, init_method: str, device: torch.device,
                          timeout_s: float = 300.0) -> None:
    """Join the default process group for context parallel (backend chosen by the device)."""
    dist.init_process_group(default_backend(device), init_method=init_method, rank=rank,
                            world_size=world_size, timeout=timedelta(seconds=timeout_s))


def replaced_attentions(
    video_dit: nn.Module, audio_dit: nn.Module, bridge: nn.Module | None, layers: set[int]
) -> list[tuple[str, Attention, str, str]]:
    """(name, layer, query stream, key stream) of every attention that runs with Ulysses."""
    out: list[tuple[str, Attention, str, str]] = []
    for tower, stream in ((video_dit, VIDEO), (audio_dit, AUDIO)):
        for i, block in enumerate(cast(nn.ModuleList, tower.blocks)):
            out.append((f"{stream} block {i} self_attn", cast(Attention, block.self_attn), stream,
                        stream))
    if bridge is not None:
        a2v_all = cast(nn.ModuleDict, bridge.audio_to_video_conditioners)
        v2a_all = cast(nn.ModuleDict, bridge.video_to_audio_conditioners)
        for i in sorted(layers):
            a2v = cast(Attention, a2v_all[str(i)].inner)
            v2a = cast(Attention, v2a_all[str(i)].inner)
            out.append((f"bridge layer {i} a2v", a2v, VIDEO, AUDIO))
            out.append((f"bridge layer {i} v2a", v2a, AUDIO, VIDEO))
    return out


def check_heads(world_size: int, attentions: list[tuple[str, Attention, str, str]]) -> None:
    """Ulysses gives each rank num_heads / N heads: every head count must divide by N."""
    bad = [f"{name} ({layer.num_heads} heads)" for name, layer, _, _ in attentions
           if layer.num_heads % world_size]
    if bad:
        shown = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise ConfigError(
            f"context_parallel={world_size}: Ulysses splits attention heads over the ranks, so "
            f"every head count must be divisible by {world_size}; not divisible: {shown}"
        )


@dataclass
class CommStats:
    """What this rank sent to the others, and the time spent in collectives when profiling."""

    bytes_sent: int = 0
    collectives: int = 0
    comm_s: float = 0.0


class ContextParallel:
    """A sequence-parallel group for joint steps: shard, exchange (Ulysses), gather."""

    def __init__(self, group: dist.ProcessGroup | None = None, *, expected_size: int | None = None,
                 profile: bool = False) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigError("context parallel needs torch.distributed initialised first "
                              "(init_context_parallel: gloo on CPU, nccl on CUDA)")
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if expected_size is not None and expected_size != self.world_size:
            raise ConfigError(f"context_parallel={expected_size} but the process group has "
                              f"{self.world_size} ranks")
        self.backend = str(dist.get_backend(group))
        self.profile = profile
        self.stats = CommStats()
        self._lengths: dict[str, int] = {}
        # One core per (query, key) stream pair, reused: a compiled block then sees the same
        # function every step instead of a new closure (which would force a recompile).
        self._cores: dict[tuple[str, str], AttentionCore] = {}

    # ---- collectives (counted; timed when profiling) --------------------------------------

    @contextmanager
    def _collective(self, sent_bytes: int, device: torch.device) -> Iterator[None]:
        self.stats.bytes_sent += sent_bytes
        self.stats.collectives += 1
        if not self.profile:  # no clock reads: a compiled block would break its graph on them
            yield
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # time the exchange, not the queued compute
        start = time.perf_counter()
        yield
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        self.stats.comm_s += time.perf_counter() - start

    def _all_to_all(self, x: Tensor) -> Tensor:
        """x (N, ...): slice j goes to rank j; returns slice r received from each rank r."""
        x = x.contiguous()
        out = torch.empty_like(x)
        n = self.world_size
        with self._collective(x.numel() * x.element_size() * (n - 1) // n, x.device):
            dist.all_to_all_single(out, x, group=self.group)
        return out

    # ---- sequence shards ------------------------------------------------------------------

    def check_device(self, device: torch.device) -> None:
        """gloo exchanges CPU tensors and NCCL CUDA tensors; refuse a mismatch up front."""
        expected = default_backend(device)
        if self.backend != expected:
            raise ConfigError(f"context parallel on {device.type} needs a {expected} process "
                              f"group; this one is {self.backend}")

    def shard(self, x: Tensor, stream: str) -> Tensor:
        """(B, L, D) -> this rank's (B, ceil(L/N), D) chunk; the last chunks carry zero padding."""
        length = x.shape[1]
        self._lengths[stream] = length
        chunk = math.ceil(length / self.world_size)
        padded = F.pad(x, (0, 0, 0, chunk * self.world_size - length))  # (B, N*chunk, D)
        return padded[:, self.rank * chunk:(self.rank + 1) * chunk].contiguous()

    def gather(self, x: Tensor, stream: str) -> Tensor:
        """Every rank's (B, chunk, D) -> (B, L, D) in token order, padding dropped."""
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        sent = x.numel() * x.element_size() * (self.world_size - 1)
        with self._collective(sent, x.device):
            dist.all_gather(parts, x, group=self.group)
        return torch.cat(parts, dim=1)[:, : self._lengths[stream]]

    # ---- Ulysses --------------------------------------------------------------------------

    def heads_to_ranks(self, x: Tensor) -> Tensor:
        """(B, L/N, n, d) sequence shard -> (B, N*L/N, n/N, d): all tokens, this rank's heads."""
        b, chunk, n, d = x.shape
        h = n // self.world_size
        x = x.reshape(b, chunk, self.world_size, h, d).permute(2, 0, 1, 3, 4)  # (N, B, chunk, h, d)
        x = self._all_to_all(x)  # slice r: rank r's tokens for my head group
        return x.permute(1, 0, 2, 3, 4).reshape(b, self.world_size * chunk, h, d)

    def tokens_to_ranks(self, x: Tensor) -> Tensor:
        """(B, N*chunk, n/N, d) head shard -> (B, chunk, n, d): this rank's tokens, all heads."""
        b, total, h, d = x.shape
        chunk = total // self.world_size
        x = x.reshape(b, self.world_size, chunk, h, d).transpose(0, 1)  # (N, B, chunk, h, d)
        x = self._all_to_all(x)  # slice r: my tokens for rank r's head group
        return x.permute(1, 2, 0, 3, 4).reshape(b, chunk, self.world_size * h, d)

    def ulysses_core(self, q_stream: str, k_stream: str) -> AttentionCore:
        """An attention core for q from q_stream shards and k, v from k_stream shards."""

        def core(q: Tensor, k: Tensor, v: Tensor, q_rope: Rotary | None, k_rope: Rotary | None,
                 kernel: AttentionKernel) -> Tensor:
            # q: (B, L_q/N, n, d)  k, v: (B, L_k/N, n, d)
            l_q, l_k = self._lengths[q_stream], self._lengths[k_stream]
            # 1. exchange to head shards and drop the padding: (B, L, n/N, d); dropping padded
            #    keys is the mask (the original keeps them, spec §11.7)
            q_full = self.heads_to_ranks(q)[:, :l_q]
            k_full = self.heads_to_ranks(k)[:, :l_k]
            v_full = self.heads_to_ranks(v)[:, :l_k]
            # 2. RoPE with the full tables and the kernel over every token, n/N heads
            out = attention_core(q_full, k_full, v_full, q_rope, k_rope, kernel)
            # 3. re-pad the queries and send each rank its tokens back: (B, L_q/N, n, d)
            out = F.pad(out, (0, 0, 0, 0, 0, q.shape[1] * self.world_size - l_q))
            return self.tokens_to_ranks(out)

        return core

    @contextmanager
    def attached(self, video_dit: nn.Module, audio_dit: nn.Module, bridge: nn.Module | None,
                 layers: set[int]) -> Iterator[None]:
        """Within the block: the replaced attentions exchange tokens through this group."""
        attentions = replaced_attentions(video_dit, audio_dit, bridge, layers)
        check_heads(self.world_size, attentions)
        try:
            for _, layer, q_stream, k_stream in attentions:
                key = (q_stream, k_stream)
                if key not in self._cores:
                    self._cores[key] = self.ulysses_core(q_stream, k_stream)
                layer.core = self._cores[key]
            yield
        finally:
            for _, layer, _, _ in attentions:
                layer.core = attention_core

"""Context parallel for the joint step (spec §13.4): N ranks share the video and audio tokens.

Each rank keeps a contiguous 1/N of each modality's tokens (zero-padded at the end to a multiple
of N) through the blocks. Attentions that need the whole sequence (the towers' self-attention,
the bridge's a2v / v2a cross-attentions) exchange tokens in two stages, as the release's
Ulysses x ring split does (Ulysses degree U, ring degree R = N / U):

1. Ulysses: within each block of U neighbouring ranks an all-to-all turns (B, L/N, n, d)
   sequence shards into (B, U*L/N, n/U, d): the block's tokens for n/U heads;
2. ring: keys and values of those heads are gathered from the R blocks, so each rank attends its
   block's queries over every key. The release streams the key blocks round a ring with a
   running softmax; gathered whole, the attention is one kernel call over the same keys.

A second all-to-all sends each rank its tokens back; text cross-attention stays local (every
rank has the whole text). Before the heads the tokens are all-gathered. U is the largest
divisor of N that divides every replaced attention's head count, so any N runs: the release's
40 / 12 heads give 2 x 1 and 4 x 1 for N = 2 and 4 and the release's 4 x 2 and 4 x 4 for 8 and
16; a head count N does not divide only moves work from the all-to-all to the gather.

Padding. The original zero-pads too but lets the padded tokens take part in attention as keys
(spec §11.7), so its CP results drift from single-GPU ones. Here the padded rows are dropped after
the exchange, before RoPE and the kernel: they are masked out of every key set, and outputs
equal one rank's up to float rounding. RoPE is applied after the exchange with the full tables
(the rows of the block for the queries): the rotation depends on the token only, the same for
every head, so a head shard takes exactly the rotation a sequence shard would.

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
from mova_model.rope import rope_rows

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


def ulysses_degree(world_size: int, attentions: list[tuple[str, Attention, str, str]]) -> int:
    """The largest divisor U of N that divides every replaced attention's head count.

    Ulysses gives each rank of a block of U ranks n / U heads; the remaining factor N / U of the
    sequence is covered by gathering keys and values (the ring stage). 1 always works."""
    heads = {layer.num_heads for _, layer, _, _ in attentions}
    return max(u for u in range(1, world_size + 1)
               if world_size % u == 0 and all(n % u == 0 for n in heads))


@dataclass
class CommStats:
    """What this rank sent to the others, and the time spent in collectives when profiling."""

    bytes_sent: int = 0
    collectives: int = 0
    comm_s: float = 0.0


class ContextParallel:
    """A sequence-parallel group for joint steps: shard, exchange (Ulysses x ring), gather."""

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
        self._cores: dict[tuple[str, str, int], AttentionCore] = {}

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

    # ---- Ulysses x ring ---------------------------------------------------------------------

    def _exchange(self, parts: Tensor, peers: list[int]) -> Tensor:
        """parts (len(peers), ...): parts[i] goes to rank peers[i] (ascending, this rank among
        them); returns (len(peers), ...) whose slot i came from peers[i]. Every peer calls it
        with the same peer list, so the one all-to-all is symmetric."""
        sizes = [0] * self.world_size
        for peer in peers:
            sizes[peer] = 1
        parts = parts.contiguous()
        out = torch.empty_like(parts)
        sent = parts.numel() * parts.element_size() * (len(peers) - 1) // len(peers)
        with self._collective(sent, parts.device):
            dist.all_to_all_single(out, parts, output_split_sizes=sizes,
                                   input_split_sizes=sizes, group=self.group)
        return out

    def _block(self, ulysses: int) -> list[int]:
        """The U neighbouring ranks of this rank's Ulysses block."""
        first = self.rank - self.rank % ulysses
        return list(range(first, first + ulysses))

    def _ring(self, ulysses: int) -> list[int]:
        """The ranks holding the same heads in the other blocks (this rank's ring)."""
        return list(range(self.rank % ulysses, self.world_size, ulysses))

    def heads_to_block(self, x: Tensor, ulysses: int) -> Tensor:
        """(B, c, n, d) sequence shard -> (B, U*c, n/U, d): the block's tokens, my heads."""
        b, chunk, n, d = x.shape
        h = n // ulysses
        parts = x.reshape(b, chunk, ulysses, h, d).permute(2, 0, 1, 3, 4)  # (U, B, c, h, d)
        parts = self._exchange(parts, self._block(ulysses))  # slot j: rank j's tokens, my heads
        return parts.permute(1, 0, 2, 3, 4).reshape(b, ulysses * chunk, h, d)

    def block_to_tokens(self, x: Tensor, ulysses: int) -> Tensor:
        """(B, U*c, n/U, d) block of my heads -> (B, c, n, d): my tokens, every head."""
        b, total, h, d = x.shape
        chunk = total // ulysses
        parts = x.reshape(b, ulysses, chunk, h, d).transpose(0, 1)  # (U, B, c, h, d)
        parts = self._exchange(parts, self._block(ulysses))  # slot j: my tokens, j's heads
        return parts.permute(1, 2, 0, 3, 4).reshape(b, chunk, ulysses * h, d)

    def gather_ring(self, x: Tensor, ulysses: int) -> Tensor:
        """(B, U*c, h, d) block -> (B, N*c, h, d): every block's tokens for the same heads."""
        ring = self._ring(ulysses)
        if len(ring) == 1:
            return x
        parts = self._exchange(x.unsqueeze(0).expand(len(ring), *x.shape), ring)
        return torch.cat(parts.unbind(0), dim=1)  # blocks in token order

    def exchanging_core(self, q_stream: str, k_stream: str, ulysses: int) -> AttentionCore:
        """An attention core for q from q_stream shards and k, v from k_stream shards."""

        def core(q: Tensor, k: Tensor, v: Tensor, q_rope: Rotary | None, k_rope: Rotary | None,
                 kernel: AttentionKernel) -> Tensor:
            # q: (B, L_q/N, n, d)  k, v: (B, L_k/N, n, d)
            l_q, l_k = self._lengths[q_stream], self._lengths[k_stream]
            # 1. Ulysses: the block's tokens for n/U heads; the ring: every key and value for
            #    them. Dropping the padded keys is the mask (the original keeps them, §11.7)
            q_block = self.heads_to_block(q, ulysses)  # (B, U*c_q, h, d)
            k_full = self.gather_ring(self.heads_to_block(k, ulysses), ulysses)[:, :l_k]
            v_full = self.gather_ring(self.heads_to_block(v, ulysses), ulysses)[:, :l_k]
            # 2. the block's real queries (padding only ever ends the sequence), RoPE with the
            #    rows of the full tables they hold, then the kernel over every key
            start = (self.rank // ulysses) * q_block.shape[1]
            rows = max(0, min(q_block.shape[1], l_q - start))
            rope = None if q_rope is None else rope_rows(q_rope, start, start + rows)
            if rows == q_block.shape[1]:
                out = attention_core(q_block, k_full, v_full, rope, k_rope, kernel)
            else:  # the block ends in padding (or is all padding): zeros there
                out = q_block.new_zeros(q_block.shape)
                if rows:
                    out[:, :rows] = attention_core(q_block[:, :rows], k_full, v_full, rope,
                                                   k_rope, kernel)
            # 3. send each rank its tokens back, every head: (B, L_q/N, n, d)
            return self.block_to_tokens(out, ulysses)

        return core

    @contextmanager
    def attached(self, video_dit: nn.Module, audio_dit: nn.Module, bridge: nn.Module | None,
                 layers: set[int]) -> Iterator[None]:
        """Within the block: the replaced attentions exchange tokens through this group."""
        attentions = replaced_attentions(video_dit, audio_dit, bridge, layers)
        ulysses = ulysses_degree(self.world_size, attentions)
        try:
            for _, layer, q_stream, k_stream in attentions:
                key = (q_stream, k_stream, ulysses)
                if key not in self._cores:
                    self._cores[key] = self.exchanging_core(q_stream, k_stream, ulysses)
                layer.core = self._cores[key]
            yield
        finally:
            for _, layer, _, _ in attentions:
                layer.core = attention_core

"""Flow-matching training of the dual-tower DiT + bridge + text encoder (spec §9), on latents of
the demo world encoded once by the trained codecs.

Per step (released recipe, §9): one training-grid index shared by video and audio; experts by step
parity (even: `video_dit` on t >= 1000·boundary, odd: `video_dit_2` below); x_σ = (1 − σ)x₀ + σε;
loss = MSE(v̂_v, ε_v − x₀_v) + MSE(v̂_a, ε_a − x₀_a). Additions the release does not have, each
needed by a mode this pipeline offers:
- first-frame conditioning (TI2VA) on half of the samples, the text-only condition on the rest
  (the pipeline's T2VA path: mask 0 and the latent of a mid-grey clip);
- text dropout (the empty prompt, 10 %), so the CFG negative branch ("" by default) has been seen;
  the paper mentions text dropout, the released code has none;
- voice-over samples on the low-noise expert's steps (20 %): the video latent clean at t = 0
  with the first-frame condition and the audio at any noise level, which is exactly what
  audio-only generation feeds the model (the sampler switches to `video_dit_2` at once, since
  t_video = 0 < boundary). Their video loss is not counted.
- optionally (`audio_led_fraction`, 0 in the recipe) voice-led samples, the mirror of voice-over
  on both experts' steps: the audio latent clean at t = 0 and the video at its noise level, so
  the picture learns to follow a given voice through the bridge (audio -> video). Their audio
  loss is not counted. No mode of the pipeline feeds this; it is a training signal only.
- optionally (`mouth_weight`, 1 in the recipe) the video loss on the latent cells that hold a
  speaking mouth counted `mouth_weight` times: the mouth is 12 x 9 pixels, 4-6 of a latent
  frame's 8 x 14 cells, so the plain mean lets the model settle for a mouth that barely
  moves (bench/README.md, bridge timing: how joint lip sync fails). `mouth_weight_where`
  "voice-led" counts it so in the voice-led samples only, where the picture has a voice to
  follow, and once in the joint ones.
The text encoder (tiny UMT5) is trained end to end through both towers' text MLPs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase, UMT5EncoderModel

from demo_world.world import FPS, MOUTH_HALF_W, MOUTH_MAX_HALF_H, RenderedClip, render_many
from mova_model.audio_dit import AudioDiT
from mova_model.audio_vae import AudioVAE
from mova_model.bridge import Conditioner, DualTowerBridge
from mova_model.config import MovaConfig, VideoVAEConfig
from mova_model.joint import joint_forward
from mova_model.padded_text import PaddedText
from mova_model.schedule import FlowMatchPairScheduler
from mova_model.text_encoder import clean_prompt
from mova_model.video_dit import VideoDiT
from mova_model.video_vae import first_frame_mask, normalize_latents
from training import common
from training.codecs import pixels
from training.common import Budget, Progress, VideoVAE, load_state, lr_at, save_state

TEXT_LEN = 512  # the pipeline pads every prompt to 512 rows (spec §5)
TI2VA_FRACTION = 0.5
TEXT_DROPOUT = 0.1
VOICE_OVER_FRACTION = 0.2
# The samples whose video loss counts the mouth `mouth_weight` times: every one, or the
# voice-led ones only
MOUTH_WEIGHT_WHERE = ("all", "voice-led")
ENCODE_BATCH = 4
# start_bridge_on_time: rotary pairs, the constant q/k offset in them and their norm scale.
# At unit-scale states an offset of 2 puts 0.91-0.96 of the attention on its own latent frame
# (an offset of 1: 0.81-0.84; 3 with a scale of 3: 0.97-1.0).
TIME_PAIRS = (2, 3, 4)
TIME_OFFSET = 2.0
TIME_GAIN = 2.0


@dataclass
class LatentSet:
    """The diffusion training set: one row per clip."""

    video: Tensor  # (n, 16, F_lat, h, w) normalised posterior mode
    first_frame: Tensor  # (n, 16, F_lat, h, w) Y = normalise(encode([I, 0, ..., 0]))
    audio: Tensor  # (n, 128, L_a) DAC posterior mean
    token_ids: list[list[int]]  # tokenised prompt, EOS included
    text_only: Tensor  # (1, 16, F_lat, h, w) Y of the all-grey clip (the T2VA condition)
    mouth: Tensor  # (n, 1, F_lat, h, w) bool: the latent cells that hold the mouth (mouth_cells)


def mouth_cells(clips: list[RenderedClip], latent_shape: tuple[int, ...]) -> Tensor:
    """(n, 1, F_lat, h, w) bool: the latent cells whose pixels the mouth (at its widest) touches.

    Latent frame k stands for pixel frames 4k-3 .. 4k (frame 0 alone for k = 0: the causal VAE),
    latent cell (i, j) for an 8 x 8 pixel block; the factors are read from the shapes."""
    f_lat, h, w = latent_shape
    cells = torch.zeros(len(clips), 1, f_lat, h, w, dtype=torch.bool)
    for row, clip in enumerate(clips):
        num_frames, height, width = clip.frames.shape[:3]
        per_latent, cell_h, cell_w = (num_frames - 1) // (f_lat - 1), height // h, width // w
        for k in range(f_lat):
            centres = clip.mouth_centre[max(0, per_latent * k - per_latent + 1):per_latent * k + 1]
            for x, y in centres[~np.isnan(centres).any(axis=1)]:
                top = max(0, int((y - MOUTH_MAX_HALF_H) // cell_h))
                bottom = int((y + MOUTH_MAX_HALF_H) // cell_h)
                left = max(0, int((x - MOUTH_HALF_W) // cell_w))
                right = int((x + MOUTH_HALF_W) // cell_w)
                cells[row, 0, k, top:bottom + 1, left:right + 1] = True
    return cells


@torch.no_grad()
def encode_world(vae: VideoVAE, vae_config: VideoVAEConfig, dac: AudioVAE,
                 tokenizer: PreTrainedTokenizerBase, num_clips: int, seed: int,
                 progress: Progress | None = None) -> LatentSet:
    """Render `num_clips` scenes from `seed` and encode them with the trained codecs."""
    video, first, audio = [], [], []
    ids: list[list[int]] = []
    clips = render_many(seed, num_clips)
    for start in range(0, num_clips, ENCODE_BATCH):
        chunk = clips[start:start + ENCODE_BATCH]
        x = pixels(np.stack([c.frames for c in chunk]))  # (B, 3, T, H, W)
        video.append(normalize_latents(vae.encode(x).latent_dist.mode().float(), vae_config))
        only_first = torch.zeros_like(x)
        only_first[:, :, 0] = x[:, :, 0]
        first.append(normalize_latents(vae.encode(only_first).latent_dist.mode().float(),
                                       vae_config))
        wave = torch.from_numpy(np.stack([c.audio for c in chunk]))[:, None]  # (B, 1, N)
        audio.append(dac.encode(wave))
        ids.extend(tokenizer(clean_prompt(c.prompt)).input_ids for c in chunk)
        if progress is not None:
            progress(min(start + ENCODE_BATCH, num_clips))
    grey = torch.zeros_like(x[:1])
    text_only = normalize_latents(vae.encode(grey).latent_dist.mode().float(), vae_config)
    latents = torch.cat(video)
    return LatentSet(video=latents, first_frame=torch.cat(first), audio=torch.cat(audio),
                     token_ids=ids, text_only=text_only,
                     mouth=mouth_cells(clips, latents.shape[2:]))


def encode_prompts(encoder: UMT5EncoderModel, token_ids: list[list[int]]) -> Tensor:
    """(B, longest prompt, d_model): the rows TextEncoder.encode gives, as far as the batch's
    longest prompt (zero past each prompt's end).

    The encoder runs on the batch's longest prompt only: with the attention mask, padding
    positions cannot change the kept rows (relative position buckets depend on i - j only), so
    this equals the 512-token forward at a fraction of the cost."""
    length = max(len(ids) for ids in token_ids)
    ids = torch.zeros(len(token_ids), length, dtype=torch.long)
    mask = torch.zeros(len(token_ids), length, dtype=torch.long)
    for row, seq in enumerate(token_ids):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden * mask.unsqueeze(-1).to(hidden.dtype)


def encode_text(encoder: UMT5EncoderModel, token_ids: list[list[int]]) -> Tensor:
    """(B, 512, d_model) with rows past each prompt exactly zero, as TextEncoder.encode gives."""
    hidden = encode_prompts(encoder, token_ids)
    return F.pad(hidden, (0, 0, 0, TEXT_LEN - hidden.shape[1]))


def encode_text_folded(encoder: UMT5EncoderModel, token_ids: list[list[int]]
                       ) -> tuple[Tensor, int]:
    """(context, pad_rows): encode_text's rows with its trailing all-zero rows (those past the
    batch's longest prompt, `pad_rows` of them) folded into one zero row at the end, which the
    attention counts `pad_rows` times (a PaddedText). No row is added when there is no padding;
    a prompt past 512 tokens is cut there, as encode_text cuts it."""
    hidden = encode_prompts(encoder, token_ids)[:, :TEXT_LEN]
    pad_rows = TEXT_LEN - hidden.shape[1]
    return (F.pad(hidden, (0, 0, 0, 1)) if pad_rows else hidden), pad_rows


class DiffusionModels(nn.Module):
    """Everything the diffusion stage trains, under one module (for the optimiser and EMA)."""

    def __init__(self, config: MovaConfig, text_encoder: UMT5EncoderModel, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed * 1000)
        self.video_dit = VideoDiT(config.video_dit)
        torch.manual_seed(seed * 1000 + 1)
        self.video_dit_2 = VideoDiT(config.video_dit)
        torch.manual_seed(seed * 1000 + 2)
        self.audio_dit = AudioDiT(config.audio_dit)
        torch.manual_seed(seed * 1000 + 3)
        self.dual_tower_bridge = DualTowerBridge(config.bridge)
        self.text_encoder = text_encoder

    def expert(self, index: int) -> VideoDiT:
        return self.video_dit if index == 0 else self.video_dit_2


def start_bridge_on_time(bridge: DualTowerBridge, pairs: tuple[int, ...] = TIME_PAIRS,
                         offset: float = TIME_OFFSET, gain: float = TIME_GAIN) -> None:
    """Make a fresh bridge's attention local in time; trained from here, not forced.

    The bridge's cross RoPE puts audio tokens and latent frames on one time axis (audio steps).
    A query and a key that carry the same constant in a rotary pair (an offset on `q`/`k`, none
    of the input) score `const * cos(freq * (t_q - t_k))` there: highest where the two times
    coincide. Pairs 2-4 of a 24-wide head turn by 0.05-0.2 rad per audio step, so their sum
    falls off within one latent frame (8.3 steps) and does not come back within a 1 s clip.
    From a random start the bridge spreads its attention evenly over time (1/7 on a clip's own
    latent frame) and training never found the timing (bench/bridge_timing.py: 0.12-0.14 after
    12000 steps); with this start it reads 0.9 on its own frame at unit-scale states, and
    still 0.3-0.55 after 12000 steps. Nothing is added to the official layout: only the
    values of q/k biases, weights and norm scales. Not the recipe's default: measured in
    bench/README.md (bridge timing), it buys voice-over sync with syllable counts.
    """
    head_dim = bridge.config.head_dim
    conditioners = [module for module in bridge.modules() if isinstance(module, Conditioner)]
    with torch.no_grad():
        for conditioner in conditioners:  # both directions, every interaction layer
            attention = conditioner.inner
            for projection, norm in ((attention.q, attention.norm_q),
                                     (attention.k, attention.norm_k)):
                for head in range(attention.num_heads):
                    for pair in pairs:
                        # rotate-half pairs dimension i with i + d/2 of each head
                        first = head * head_dim + pair
                        both = [first, first + head_dim // 2]
                        projection.weight[both] = 0.0
                        projection.bias[both] = torch.tensor([offset, 0.0])
                        norm.weight[both] = gain


def _timestep_ranges(scheduler: FlowMatchPairScheduler, boundary_ratio: float
                     ) -> tuple[range, range]:
    """Training-grid indices of the high-noise expert (t >= boundary) and of the low one."""
    boundary = boundary_ratio * scheduler.config.num_train_timesteps
    n_high = int((scheduler.train_timesteps >= boundary).sum())
    return range(0, n_high), range(n_high, scheduler.config.num_train_timesteps)


def check_mouth_weight_where(where: str) -> None:
    """Refuse a `mouth_weight_where` that is none of MOUTH_WEIGHT_WHERE."""
    if where not in MOUTH_WEIGHT_WHERE:
        raise ValueError(f"mouth_weight_where={where!r}: one of {', '.join(MOUTH_WEIGHT_WHERE)}")


def mouth_weight_is_idle(where: str, audio_led_fraction: float, mouth_weight: float) -> bool:
    """Whether the mouth's weight, asked for in the voice-led samples only, would change
    nothing: there are none, or the weight is 1."""
    return where == "voice-led" and (audio_led_fraction == 0 or mouth_weight == 1)


def diffusion_loss(models: DiffusionModels, data: LatentSet, scheduler: FlowMatchPairScheduler,
                   boundary_ratio: float, rows: Tensor, expert: int,
                   generator: torch.Generator,
                   voice_over_fraction: float = VOICE_OVER_FRACTION,
                   audio_led_fraction: float = 0.0, mouth_weight: float = 1.0,
                   mouth_weight_where: str = "all") -> tuple[Tensor, Tensor]:
    """(video loss, audio loss) of one batch for one expert; `voice_over_fraction` of the low
    expert's samples are voice-over ones, `audio_led_fraction` of the others voice-led ones;
    the video loss counts the mouth's latent cells `mouth_weight` times, in every sample
    (`mouth_weight_where` "all") or in the voice-led ones only ("voice-led")."""
    check_mouth_weight_where(mouth_weight_where)
    b = rows.numel()
    grid = scheduler.train_sigmas
    high, low = _timestep_ranges(scheduler, boundary_ratio)
    span = high if expert == 0 else low

    def uniform(count: int) -> Tensor:
        return torch.rand(count, generator=generator)

    index = (span.start + (uniform(b) * len(span)).long().clamp_max(len(span) - 1))
    sigma_v = grid[index].clone()
    sigma_a = grid[index].clone()
    ti2va = uniform(b) < TI2VA_FRACTION
    voice_over = torch.zeros(b, dtype=torch.bool)
    if expert == 1:
        voice_over = uniform(b) < voice_over_fraction
        any_index = (uniform(b) * len(grid)).long().clamp_max(len(grid) - 1)
        sigma_a = torch.where(voice_over, grid[any_index], sigma_a)
        sigma_v = torch.where(voice_over, torch.zeros_like(sigma_v), sigma_v)
        ti2va = ti2va | voice_over  # audio-only generation conditions on the locked frame 0
    audio_led = torch.zeros(b, dtype=torch.bool)
    if audio_led_fraction > 0:  # drawn only when asked: the recipe's random stream is unchanged
        audio_led = (uniform(b) < audio_led_fraction) & ~voice_over
        sigma_a = torch.where(audio_led, torch.zeros_like(sigma_a), sigma_a)
    token_ids = [data.token_ids[int(r)] if uniform(1).item() >= TEXT_DROPOUT else [1]
                 for r in rows]  # [1] = EOS alone: the empty prompt
    # 1. condition: mask (B, 4, F, h, w) and first-frame latent (B, 16, F, h, w)
    x0_v, x0_a = data.video[rows], data.audio[rows]
    _, _, f_lat, h, w = x0_v.shape
    mask = first_frame_mask(f_lat, h, w).expand(b, -1, -1, -1, -1) \
        * ti2va.float().view(b, 1, 1, 1, 1)
    first = torch.where(ti2va.view(b, 1, 1, 1, 1), data.first_frame[rows],
                        data.text_only.expand(b, -1, -1, -1, -1))
    # 2. noise both modalities independently
    eps_v = torch.randn(x0_v.shape, generator=generator)
    eps_a = torch.randn(x0_a.shape, generator=generator)
    sv, sa = sigma_v.view(b, 1, 1, 1, 1), sigma_a.view(b, 1, 1)
    x_v = (1 - sv) * x0_v + sv * eps_v
    x_a = (1 - sa) * x0_a + sa * eps_a
    # 3. one joint forward
    context, pad_rows = encode_text_folded(models.text_encoder, token_ids)
    # the 512-row context's attention, its padding one row counted pad_rows times
    text = PaddedText(context, max(pad_rows, 1))
    scale = scheduler.config.num_train_timesteps
    video_in = torch.cat([x_v, mask, first], dim=1)  # (B, 36, F, h, w)
    v_pred, a_pred = joint_forward(models.expert(expert), models.audio_dit,
                                   models.dual_tower_bridge, video_in, x_a, text,
                                   sigma_v * scale, sigma_a * scale, FPS)
    # 4. velocity targets; voice-over samples do not count for video, voice-led ones not for
    # audio
    video_weight = None  # the recipe: every cell once (and its arithmetic, bit for bit)
    if mouth_weight != 1.0:
        mouth = data.mouth[rows].float()
        if mouth_weight_where == "voice-led":
            mouth = mouth * audio_led.float().view(b, *([1] * (mouth.dim() - 1)))
        video_weight = 1.0 + (mouth_weight - 1.0) * mouth
    return (_masked_mse(v_pred, eps_v - x0_v, ~voice_over, video_weight),
            _masked_mse(a_pred, eps_a - x0_a, ~audio_led))


def loss_batches(num_clips: int, batch: int, draws: int) -> list[Tensor]:
    """Row batches covering `num_clips` clips in order, the whole set `draws` times: a loss
    measured over them, with a generator seeded by each batch's index, draws the same noise
    for any two sets of clips (the benches compare sets this way)."""
    once = [torch.arange(start, min(start + batch, num_clips))
            for start in range(0, num_clips, batch)]
    return once * draws


def _masked_mse(prediction: Tensor, target: Tensor, counted: Tensor,
                weight: Tensor | None = None) -> Tensor:
    """Mean squared error over the batch rows where `counted` (B,) is True (0 when none);
    `weight` (broadcast to the prediction) counts some elements more than once. The mean
    divides by the elements, not the weights: weighted cells add to the loss, the others keep
    their share of it."""
    keep = counted.float().view(-1, *([1] * (prediction.dim() - 1)))
    if weight is not None:
        keep = keep * weight
    err = ((prediction - target) ** 2 * keep).sum()
    return err / (counted.float().sum() * prediction[0].numel()).clamp_min(1.0)


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p, 1 - decay)


def train_diffusion(models: DiffusionModels, data: LatentSet, scheduler: FlowMatchPairScheduler,
                    boundary_ratio: float, budget: Budget, state_path: Path, seed: int,
                    audio_led_fraction: float = 0.0, mouth_weight: float = 1.0,
                    mouth_weight_where: str = "all") -> DiffusionModels:
    """Train in place; returns the EMA copy (what gets saved). Resumable from `state_path`.
    `audio_led_fraction`: voice-led samples, `mouth_weight` / `mouth_weight_where`: the
    mouth's share of the video loss and the samples it has it in (diffusion_loss)."""
    # Everything in `models` trains, however it was loaded: weights from a trained folder come
    # frozen from the inference loader, and a continued run trained the text encoder alone
    # until 2026-12-04.
    models.requires_grad_(True)
    optimiser = torch.optim.AdamW(models.parameters(), lr=budget.dit_lr, weight_decay=0.01,
                                  betas=(0.9, 0.99))
    ema = copy.deepcopy(models).requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    start = 0
    state = load_state(state_path)
    if state is not None:
        models.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimiser.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        start = state["step"]
    progress = Progress("diffusion", budget.dit_steps, budget.log_every, start)
    models.train()
    n = data.video.shape[0]
    for step in range(start, budget.dit_steps):
        rows = torch.randint(n, (budget.dit_batch,), generator=generator)
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, budget.dit_steps, budget.dit_lr, budget.warmup_steps)
        expert = step % 2  # even steps: high-noise expert, odd: low-noise (spec §9)
        video_loss, audio_loss = diffusion_loss(models, data, scheduler, boundary_ratio, rows,
                                                expert, generator,
                                                audio_led_fraction=audio_led_fraction,
                                                mouth_weight=mouth_weight,
                                                mouth_weight_where=mouth_weight_where)
        loss = video_loss + audio_loss
        common.optimiser_step(models.parameters(), optimiser, loss, "diffusion", step)
        _ema_update(ema, models, budget.ema_decay)
        done = step + 1
        progress(done, video=video_loss.item(), audio=audio_loss.item(), expert=expert)
        if done % budget.checkpoint_every == 0 or done == budget.dit_steps:
            save_state(state_path, {"model": models.state_dict(), "ema": ema.state_dict(),
                                    "optimiser": optimiser.state_dict(),
                                    "generator": generator.get_state(), "step": done})
    models.eval()
    return ema.eval()

"""Reconstruction training of the two codecs on the demo world: the Wan video VAE and the DAC.

Both are trained as VAEs (reparameterised sample + a small KL), so their latent spaces are
smooth for the diffusion stage. After training, the latents are put on the scale the pipeline
expects: the video VAE's per-channel `latents_mean`/`latents_std` config fields are measured
on the world, and the DAC (which the pipeline uses unnormalised, spec §6.2) is reparameterised
so its posterior mean has unit standard deviation per channel, and its decoder is set to the
input's level.
"""

from __future__ import annotations

import enum
import functools
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_dilation  # type: ignore[import-untyped]  # no stubs installed
from torch import Tensor

from demo_world.analysers import DARK_MAX_CHANNEL, object_mask
from demo_world.world import (
    HEIGHT,
    MOUTH_HALF_W,
    MOUTH_MAX_HALF_H,
    NUM_FRAMES,
    WIDTH,
    RenderedClip,
    render,
    sample_scene,
)
from mova_model.audio_vae import AudioVAE, Conv1d
from mova_model.config import AudioVAEConfig, VideoVAEConfig
from training.common import (
    Budget,
    Progress,
    VideoVAE,
    load_state,
    lr_at,
    optimiser_step,
    save_state,
)

log = logging.getLogger("training")

KL_WEIGHT = 1e-6  # per latent element relative to per-pixel MSE: a gentle pull, no blur
MEL_RESOLUTIONS = ((512, 40), (1024, 64), (2048, 80))  # (FFT size, mel bands)
MEL_FLOOR = 0.01  # magnitude floor of the log: ~60 dB under speech, so empty bands weigh little
# The DAC's posterior starts narrow (std e^-5): at the default (log-variance 0, std 1) the noise
# drowned the encoder's small early latents, the decoder learned to ignore them and decoded the
# average sound, near silence; a gentle KL cannot undo that.
DAC_INITIAL_LOG_VARIANCE = -10.0
# The tiny preset's DAC decoder (width 64, halved per upsampling: 2 channels at 48 kHz) stayed
# quiet and flat in trials; width 128 (+0.3 M parameters) learned the world's speech.
DEMO_DAC_DECODER_DIM = 128
# The causal VAE codes a clip's first frame alone (one latent frame for one picture), and that
# frame is what TI2VA keeps; with equal weights it came out ~3 dB under the others (16.2 against
# 19.3 dB after 1700 steps at width 8), so the first frame of each window weighs more.
FIRST_FRAME_WEIGHT = 3.0
CROP_H, CROP_W = 32, 56  # video VAE training crop (pixels)
# Share of video VAE crops centred on the object: a random crop is mostly background, and the
# small objects' colours and features are what the demo's prompts name.
OBJECT_CROP_SHARE = 0.5


def world_clips(rng: np.random.Generator, count: int) -> list[RenderedClip]:
    """Freshly drawn scenes, rendered."""
    return [render(sample_scene(rng)) for _ in range(count)]


def world_audio(seed: int, count: int) -> Tensor:
    """(count, 1, N) soundtracks of fresh clips drawn with `seed`."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([clip.audio for clip in world_clips(rng, count)]))[:, None]


def pixels(frames: np.ndarray) -> Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, 3, T, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(127.5).sub(1)
    return x.permute(0, 4, 1, 2, 3)  # (B, T, H, W, 3) -> (B, 3, T, H, W)


# ---- video VAE -------------------------------------------------------------------------------


def feature_pixels(x: Tensor) -> Tensor:
    """(B, 1, T, H, W) bool: the world's dark features (eyes, mouth, box outline) in pixels x
    (B, 3, T, H, W) in [-1, 1]: every channel at most DARK_MAX_CHANNEL, which no object colour
    and no background is."""
    return x.amax(dim=1, keepdim=True) <= DARK_MAX_CHANNEL / 127.5 - 1


def mouth_pixels(clip: RenderedClip) -> np.ndarray:
    """(T, H, W) bool: in each frame with a face, the box its mouth fills at its widest, so the
    face's pixels around a closed mouth count as much as an open one's."""
    frames, height, width = clip.frames.shape[:3]
    boxes = np.zeros((frames, height, width), dtype=bool)
    rows, cols = np.arange(height)[:, None], np.arange(width)[None, :]
    for frame, (x, y) in enumerate(clip.mouth_centre):
        if not np.isnan(x):
            boxes[frame] = ((np.abs(rows - y) <= MOUTH_MAX_HALF_H)
                            & (np.abs(cols - x) <= MOUTH_HALF_W))
    return boxes


def object_pixels(clip: RenderedClip) -> np.ndarray:
    """(T, H, W) bool: the object as the analysers see it (analysers.object_mask: the pixels
    that differ from their row's background) and the one-pixel ring around it, where a decoder
    that blurs the object's edge or rounds a box's corners loses or adds it."""
    inside = np.stack([object_mask(frame) for frame in clip.frames])
    ring: np.ndarray = binary_dilation(inside, structure=np.ones((1, 3, 3), dtype=bool))
    return ring


@dataclass(frozen=True)
class PixelWeights:
    """How much a pixel counts in the video VAE's loss, against any other pixel's 1; the
    weights of a pixel that is several of these multiply."""

    first_frame: float = FIRST_FRAME_WEIGHT  # the window's first frame
    features: float = 1.0  # the world's dark features (feature_pixels)
    mouth: float = 1.0  # the box a face's mouth fills at its widest (mouth_pixels)
    objects: float = 1.0  # the object and a one-pixel ring around it (object_pixels)


RECIPE_WEIGHTS = PixelWeights()

# The weights whose pixels each clip's own description gives (where the world drew its mouth,
# its object), by PixelWeights field; the dark features are read from the pixels alone.
CLIP_MASKS: dict[str, Callable[[RenderedClip], np.ndarray]] = {"mouth": mouth_pixels,
                                                               "objects": object_pixels}


def clip_masks(clip: RenderedClip, weights: PixelWeights) -> dict[str, np.ndarray]:
    """`clip`'s (T, H, W) CLIP_MASKS that `weights` needs: those whose weight is not 1."""
    return {field: pixels_of(clip) for field, pixels_of in CLIP_MASKS.items()
            if getattr(weights, field) != 1.0}


def video_vae_loss(vae: VideoVAE, x: Tensor, generator: torch.Generator,
                   weights: PixelWeights = RECIPE_WEIGHTS,
                   masks: Mapping[str, Tensor] | None = None) -> Tensor:
    """MSE + L1 on pixels, weighted by `weights` + KL: x (B, 3, T, H, W) in [-1, 1]; `masks`
    by PixelWeights field, each clip's CLIP_MASKS as (B, 1, T, H, W) bool (needed for each
    of those weights that is not 1)."""
    posterior = vae.encode(x).latent_dist
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
    recon: Tensor = vae.decode(z).sample
    kl: Tensor = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    weight = torch.ones(x.shape[2])
    weight[0] = weights.first_frame
    weight = (weight / weight.mean()).view(1, 1, -1, 1, 1)
    if weights.features != 1.0:
        weight = weight * (1.0 + (weights.features - 1.0) * feature_pixels(x))
    for field, pixels_of in CLIP_MASKS.items():
        if (times := getattr(weights, field)) != 1.0:
            if masks is None or field not in masks:
                raise ValueError(f"PixelWeights.{field}={times} needs the clips' "
                                 f"{pixels_of.__name__.replace('_', ' ')}")
            weight = weight * (1.0 + (times - 1.0) * masks[field])
    error = recon - x
    return (weight * (error.pow(2) + 0.5 * error.abs())).mean() + KL_WEIGHT * kl


def _step(module: torch.nn.Module, optimiser: torch.optim.Optimizer, loss: Tensor,
          lr: float, stage: str, step: int) -> None:
    """One optimiser step at `lr` (common.optimiser_step: clipped, refused when not finite)."""
    for group in optimiser.param_groups:
        group["lr"] = lr
    optimiser_step(module.parameters(), optimiser, loss, stage, step)


def _save(path: Path, module: torch.nn.Module, optimiser: torch.optim.Optimizer,
          rng: np.random.Generator, generator: torch.Generator, step: int) -> None:
    """Everything a resumed codec run needs to continue bit for bit."""
    save_state(path, {"model": module.state_dict(), "optimiser": optimiser.state_dict(),
                      "rng": rng.bit_generator.state, "generator": generator.get_state(),
                      "step": step})


def _crop_origin(frame: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) of a training crop, multiples of 8 (the VAE's stride): around the object of
    `frame` OBJECT_CROP_SHARE of the time, anywhere otherwise."""
    top = 8 * int(rng.integers(0, (HEIGHT - CROP_H) // 8 + 1))
    left = 8 * int(rng.integers(0, (WIDTH - CROP_W) // 8 + 1))
    if rng.random() < OBJECT_CROP_SHARE:
        ys, xs = np.nonzero(object_mask(frame))
        if ys.size:
            top = 8 * round(min(max(ys.mean() - CROP_H / 2, 0), HEIGHT - CROP_H) / 8)
            left = 8 * round(min(max(xs.mean() - CROP_W / 2, 0), WIDTH - CROP_W) / 8)
    return top, left


class VideoVAEPhase(enum.Enum):
    """The video VAE's training phases, in the order a run takes them."""

    WINDOWS = "video_vae"  # short frame windows, half-size crops: the cheap bulk of it
    CLIPS = "video_vae_clips"  # whole clips: the causal caches run past the second chunk
    # Whole clips, the encoder frozen: its latents (all the diffusion stage sees) do not change,
    # the decoder draws them sharper.
    DECODER = "video_vae_decoder"


def encoder_parameters(vae: VideoVAE) -> list[torch.nn.Parameter]:
    """The encoder's parameters (with the posterior's projection): what the latents depend on."""
    return [*vae.encoder.parameters(), *vae.quant_conv.parameters()]


def _phase_settings(budget: Budget, phase: VideoVAEPhase) -> tuple[int, int, int, float]:
    """(steps, frames per example, batch, peak rate) of one phase."""
    if phase is VideoVAEPhase.WINDOWS:
        return (budget.video_vae_steps, budget.video_vae_frames, budget.video_vae_batch,
                budget.video_vae_lr)
    if phase is VideoVAEPhase.CLIPS:
        return (budget.video_vae_clip_steps, NUM_FRAMES, budget.video_vae_clip_batch,
                budget.video_vae_clip_lr)
    return (budget.video_vae_decoder_steps, NUM_FRAMES, budget.video_vae_clip_batch,
            budget.video_vae_decoder_lr)


def train_video_vae(vae: VideoVAE, budget: Budget, state_path: Path, seed: int,
                    phase: VideoVAEPhase = VideoVAEPhase.WINDOWS,
                    threads_at: Callable[[int], int] | None = None,
                    weights: PixelWeights = RECIPE_WEIGHTS) -> None:
    """Train in place for one phase of the budget (its own steps, batch and rate) on fresh
    clips; resumable from `state_path`. `threads_at(step)`: torch's thread count for that
    step (a resumed run follows it too); `weights`: video_vae_loss's."""
    name = phase.value
    steps, window, batch, peak = _phase_settings(budget, phase)
    frozen = encoder_parameters(vae) if phase is VideoVAEPhase.DECODER else []
    trained = [p for p in vae.parameters() if all(p is not q for q in frozen)]
    optimiser = torch.optim.AdamW(trained, lr=peak, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    start = 0
    state = load_state(state_path)
    if state is not None:
        vae.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        start = state["step"]
    progress = Progress(name, steps, budget.log_every, start)
    vae.train()
    # no graph is built for a frozen encoder
    with _no_grad_for(frozen), channels_last_convolutions(vae):
        for step in range(start, steps):
            threads = torch.get_num_threads() if threads_at is None else threads_at(step)
            if threads != torch.get_num_threads():
                torch.set_num_threads(threads)
                log.info("stage=%s step=%d threads=%d", name, step, threads)
            clips: list[np.ndarray] = []
            masks: dict[str, list[np.ndarray]] = {}
            for clip in world_clips(rng, batch):
                own_masks = clip_masks(clip, weights)
                view: tuple[slice, ...]
                if phase is VideoVAEPhase.DECODER:  # whole frames, as the pipeline decodes them
                    view = (slice(None),)
                else:
                    # A window of frames and a half-size spatial crop (multiples of 8): the VAE
                    # is convolutional with per-frame attention, and a quarter of the pixels is
                    # a quarter of the cost, which is what makes this stage fit the CPU budget.
                    first = int(rng.integers(0, NUM_FRAMES - window + 1))
                    top, left = _crop_origin(clip.frames[first + window // 2], rng)
                    view = (slice(first, first + window), slice(top, top + CROP_H),
                            slice(left, left + CROP_W))
                clips.append(clip.frames[view])
                for field, mask in own_masks.items():
                    masks.setdefault(field, []).append(mask[view])
            x = pixels(np.stack(clips))
            loss = video_vae_loss(vae, x, generator, weights,
                                  {field: torch.from_numpy(np.stack(per_clip))[:, None]
                                   for field, per_clip in masks.items()})
            _step(vae, optimiser, loss, lr_at(step, steps, peak, budget.warmup_steps), name,
                  step)
            done = step + 1
            progress(done, loss=loss.item())
            if done % budget.checkpoint_every == 0 or done == steps:
                _save(state_path, vae, optimiser, rng, generator, done)
    vae.eval()


@contextmanager
def channels_last_convolutions(module: torch.nn.Module) -> Iterator[None]:
    """The module's 3-D convolution weights in channels-last layout inside, contiguous again
    after (as a checkpoint stores them). oneDNN runs the VAE's convolutions in that layout ~25 %
    faster on 9-frame crops and ~35 % on whole clips, forward and backward (2-core EPYC, fp32,
    2026-12-05); the sums are ordered differently, so the weights differ in the last bits."""
    convolutions = [m for m in module.modules() if isinstance(m, torch.nn.Conv3d)]
    for conv in convolutions:
        conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last_3d)
    try:
        yield
    finally:
        for conv in convolutions:
            conv.weight.data = conv.weight.data.contiguous()


@contextmanager
def _no_grad_for(params: list[torch.nn.Parameter]) -> Iterator[None]:
    """No gradient for `params` inside (no graph is kept for them), as they were after."""
    were = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, was in zip(params, were, strict=True):
            p.requires_grad_(was)


@torch.no_grad()
def measure_latent_stats(vae: VideoVAE, config: VideoVAEConfig, seed: int,
                         num_clips: int = 24) -> VideoVAEConfig:
    """The config with `latents_mean`/`latents_std` measured on fresh clips (posterior mode)."""
    rng = np.random.default_rng(seed)
    latents = []
    for clip in world_clips(rng, num_clips):
        latents.append(vae.encode(pixels(clip.frames[None])).latent_dist.mode())
    z = torch.cat(latents)  # (n, 16, F_lat, h, w)
    mean = z.mean(dim=(0, 2, 3, 4))
    std = z.std(dim=(0, 2, 3, 4)).clamp_min(1e-3)
    return config.replace(latents_mean=tuple(round(float(v), 5) for v in mean),
                          latents_std=tuple(round(float(v), 5) for v in std))


# ---- DAC -------------------------------------------------------------------------------------


@functools.cache  # the same three banks every training step
def _mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, min_hz: float = 40.0) -> Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on the mel scale (shared: do
    not modify the returned tensor)."""
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(np.array(min_hz)), to_mel(np.array(sample_rate / 2)),
                              n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    rising = (bins[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    falling = (edges[2:, None] - bins[None]) / (edges[2:, None] - edges[1:-1, None])
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None)).float()


def _mel_loss(recon: Tensor, target: Tensor, sample_rate: int) -> Tensor:
    """Multi-resolution log-mel distance (recon/target: (B, N)).

    Mel bands, not STFT bins: the bins' loss (log and linear magnitudes, with a waveform L1)
    trained a DAC that decoded near silence. Most bins of this world are empty, every bin
    voted alike, and the cheapest answer was a quiet decoder; a band only asks for the energy
    in it, which a small decoder can give, and the analysers measure exactly that (band
    envelopes). Tried on this CPU: bins, 600 steps: 0 of 13 syllable counts kept, output RMS
    0.01 of the input's; mel, decoder width 128: 13 of 13 from step 500, envelope correlation
    0.9+."""
    total = recon.new_zeros(())
    for n_fft, n_mels in MEL_RESOLUTIONS:
        bank = _mel_filterbank(n_fft, n_mels, sample_rate)
        window = torch.hann_window(n_fft)
        mel_r = bank @ torch.stft(recon, n_fft, n_fft // 4, window=window,
                                  return_complex=True).abs()
        mel_t = bank @ torch.stft(target, n_fft, n_fft // 4, window=window,
                                  return_complex=True).abs()
        total = total + F.l1_loss(torch.log10(mel_r + MEL_FLOOR), torch.log10(mel_t + MEL_FLOOR))
    return total / len(MEL_RESOLUTIONS)


def dac_moments(dac: AudioVAE, audio: Tensor) -> tuple[Tensor, Tensor]:
    """(mean, log-variance) of the DAC posterior for audio (B, 1, N), N a multiple of the hop."""
    moments = dac.quant_conv(dac.encoder(audio))
    mean, log_variance = moments.chunk(2, dim=1)
    return mean, log_variance.clamp(-30.0, 20.0)


def audio_vae_loss(dac: AudioVAE, audio: Tensor, generator: torch.Generator) -> Tensor:
    """Multi-resolution log-mel + KL for audio (B, 1, N)."""
    mean, log_variance = dac_moments(dac, audio)
    z = mean + torch.exp(0.5 * log_variance) * torch.randn(mean.shape, generator=generator)
    recon = dac.decode(z)
    kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance).mean()
    return _mel_loss(recon[:, 0], audio[:, 0], dac.config.sample_rate) + KL_WEIGHT * kl


def _segment_start(audio: np.ndarray, length: int, rng: np.random.Generator) -> int:
    """Half the time the loudest window of the clip, else a random one: most of the world's
    sound is quiet ambience, and speech and knocks are what the decoder has to learn."""
    if rng.random() < 0.5:
        # window sums by a running total: O(N), where np.convolve took ~60 ms per clip
        running = np.concatenate([[0.0], np.cumsum(np.abs(audio), dtype=np.float64)])
        return int(np.argmax(running[length:] - running[:-length]))
    return int(rng.integers(0, audio.size - length + 1))


def train_audio_vae(dac: AudioVAE, budget: Budget, state_path: Path, seed: int) -> None:
    """Train in place on random segments of fresh soundtracks; resumable from `state_path`."""
    optimiser = torch.optim.AdamW(dac.parameters(), lr=budget.audio_vae_lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    start = 0
    state = load_state(state_path)
    if state is not None:
        dac.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        start = state["step"]
    progress = Progress("audio_vae", budget.audio_vae_steps, budget.log_every, start)
    dac.train()
    length = budget.audio_vae_samples
    for step in range(start, budget.audio_vae_steps):
        segments = []
        # two segments per clip: half as many scenes to render per step
        for clip in world_clips(rng, math.ceil(budget.audio_vae_batch / 2)):
            for _ in range(2):
                first = _segment_start(clip.audio, length, rng)
                segments.append(clip.audio[first:first + length])
        x = torch.from_numpy(np.stack(segments[:budget.audio_vae_batch]))[:, None]  # (B, 1, N)
        loss = audio_vae_loss(dac, x, generator)
        _step(dac, optimiser, loss, lr_at(step, budget.audio_vae_steps, budget.audio_vae_lr,
                                          budget.warmup_steps), "audio_vae", step)
        done = step + 1
        progress(done, loss=loss.item())
        if done % budget.checkpoint_every == 0 or done == budget.audio_vae_steps:
            _save(state_path, dac, optimiser, rng, generator, done)
    dac.eval()


@torch.no_grad()
def normalise_dac_latents(dac: AudioVAE, seed: int, num_clips: int = 24) -> Tensor:
    """Standardise the DAC's posterior mean per channel on the world (zero mean, unit std);
    returns the per-channel std measured before.

    Per channel, not one scale for all: on the world the channels sit at fixed offsets (median
    |mean| 0.74) with a content std of only 0.013-0.19, so one global scale left the sound's
    content at ~1/200 of the diffusion noise's variance and the audio tower learned nothing of
    it (its loss flat at 0.64 over 8000 steps). Exact reparameterisation: z' = (z - m) / s in the
    mean rows of `quant_conv` (the log-variance rows shifted by -2 log s to match), undone in
    `post_quant_conv` (P' = P diag(s), p' = p + P m), so decode(encode(x)) is unchanged. Spec
    §6.2: the pipeline feeds DAC latents to the diffusion model as they are, so the
    normalisation has to live in the codec's weights."""
    audio = world_audio(seed, num_clips)
    latent_dim = dac.config.latent_dim
    latents = dac.encode(audio)  # (n, latent_dim, L_a)
    mean = latents.mean(dim=(0, 2))
    std = latents.std(dim=(0, 2)).clamp_min(1e-4)
    quant, post = dac.quant_conv, dac.post_quant_conv
    assert quant.bias is not None and post.bias is not None  # built with bias (audio_vae.py)
    post.bias += post.weight[:, :, 0] @ mean
    post.weight *= std[None, :, None]
    quant.weight[:latent_dim] /= std[:, None, None]
    quant.bias[:latent_dim] = (quant.bias[:latent_dim] - mean) / std
    quant.bias[latent_dim:] -= 2 * torch.log(std)
    return std


@torch.no_grad()
def calibrate_dac_gain(dac: AudioVAE, seed: int, num_clips: int = 24, rounds: int = 4) -> float:
    """Fold a gain into the decoder's last convolution (before its tanh) so decode(encode(x))
    is as loud as x on the world (median RMS ratio over fresh clips); returns the gain.

    The log-mel loss matches the spectrum's shape far better than its level: the trained DAC
    decoded at 0.44 of the input's RMS and its speech at 0.28, under the analysers' speaking
    level (with the gain: syllables counted right in 13 of 13 held-out clips instead of 6).
    The encoder (all the diffusion stage sees) is untouched. A few rounds, since the tanh
    makes a gain's effect less than linear; a round that brings the level no closer is undone."""
    audio = world_audio(seed, num_clips)
    latents = dac.encode(audio)
    last = dac.decoder.model[-2]  # Conv1d(width, 1, 7), then the Tanh
    assert isinstance(last, Conv1d)
    kernel = last.weight_g if last.weight_norm else last.weight  # scales the kernel linearly

    def level_ratio() -> float:
        decoded = dac.decode(latents)[..., : audio.shape[-1]]
        return float((audio.std(dim=-1) / decoded.std(dim=-1).clamp_min(1e-6)).median())

    # The kernel, not the bias: the sound scales, a DC offset is not pushed into the tanh.
    total, ratio = 1.0, level_ratio()
    for _ in range(rounds):
        gain = min(max(ratio, 0.25), 4.0)  # one round never more than 4x either way
        kernel.mul_(gain)
        new_ratio = level_ratio()
        if abs(math.log(new_ratio)) >= abs(math.log(ratio)):  # no closer: undo and stop
            kernel.div_(gain)
            break
        total, ratio = total * gain, new_ratio
    return total


def build_audio_codec(config: AudioVAEConfig, seed: int) -> AudioVAE:
    """A freshly initialised DAC (own seed) whose posterior starts narrow (see above)."""
    torch.manual_seed(seed * 1000 + 4)
    dac = AudioVAE(config)
    assert dac.quant_conv.bias is not None  # built with bias (audio_vae.py)
    with torch.no_grad():
        latent_dim = dac.config.latent_dim
        dac.quant_conv.weight[latent_dim:] = 0.0
        dac.quant_conv.bias[latent_dim:] = DAC_INITIAL_LOG_VARIANCE
    return dac


def build_video_codec(config: VideoVAEConfig, seed: int) -> VideoVAE:
    """A freshly initialised video VAE (own seed)."""
    from mova_model.video_vae import build_video_vae

    torch.manual_seed(seed * 1000 + 5)
    return build_video_vae(config)


def build_codecs(video_config: VideoVAEConfig, audio_config: AudioVAEConfig, seed: int
                 ) -> tuple[VideoVAE, AudioVAE]:
    """Freshly initialised codecs, each under its own seed."""
    return build_video_codec(video_config, seed), build_audio_codec(audio_config, seed)

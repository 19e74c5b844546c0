"""From a rendered clip to a finished 720p-class MP4: aspect crop, loudness, captions, encode.

Commands are built purely (ffmpeg-python graphs compiled to argument lists) and run through
infra.media; every step is a function that can be tested on its own.
"""

from __future__ import annotations

import dataclasses
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import langcodes
import numpy as np
from scipy.io import wavfile

from infra.fonts import fontconfig_file
from infra.media import MediaError, decode_audio, probe, run_ffmpeg
from schemas.brief import Aspect
from schemas.finishing import (
    DELIVERY_X264_PRESET,
    TARGET_SIZES,
    CaptionCue,
    FinishResult,
    FinishSpec,
    LoudnessTarget,
    X264Preset,
)
from tasks.overlay import build_ass
from tasks.qc import file_analysis, integrated_lufs, run_qc

GOP_SECONDS = 2
AUDIO_RATE = 48_000
ASPECT_RATIOS = {Aspect.LANDSCAPE: (16, 9), Aspect.PORTRAIT: (9, 16), Aspect.SQUARE: (1, 1)}


def iso639_2(locale: str) -> str:
    """The 3-letter (ISO 639-2/B where it differs) language code MP4 track tags use."""
    code = str(langcodes.Language.get(locale).to_alpha3(variant="B"))
    return code or "und"


def crop_box(src_w: int, src_h: int, aspect: Aspect,
             focus: tuple[float, float] | None = None) -> tuple[int, int, int, int]:
    """(width, height, x, y) of the largest crop with the target aspect, centred on `focus`
    (fractions of the frame, default the centre), kept inside the frame; even sizes."""
    rw, rh = ASPECT_RATIOS[aspect]
    fx, fy = focus or (0.5, 0.5)
    if src_w * rh > src_h * rw:  # source wider than target: crop width
        height, width = src_h, min(src_w, round(src_h * rw / rh))
    else:
        width, height = src_w, min(src_h, round(src_w * rh / rw))
    width, height = width - width % 2, height - height % 2
    x = int(min(max(fx * src_w - width / 2, 0), src_w - width))
    y = int(min(max(fy * src_h - height / 2, 0), src_h - height))
    return width, height, x, y


@dataclass(frozen=True)
class PictureEncoding:
    """How a finished file's picture is encoded, and how ffprobe and QC then see it."""

    options: dict[str, object]  # ffmpeg output options of the picture
    profile: str  # the H.264 profile as ffprobe names it
    pix_fmt: str


# Delivery: H.264 High 4:2:0, what every player and platform takes (x264 preset: a setting).
DELIVERY = PictureEncoding({"vcodec": "libx264", "profile:v": "high", "crf": 20},
                           profile="High", pix_fmt="yuv420p")
# An intermediate scene finish: lossless (qp 0) 4:4:4, so the spot encode is the picture's only
# lossy generation; ultrafast, as the file is read once, by the spot.
INTERMEDIATE = PictureEncoding({"vcodec": "libx264", "profile:v": "high444",
                                "preset": "ultrafast", "qp": 0},
                               profile="High 4:4:4 Predictive", pix_fmt="yuv444p")


def picture_encoding(spec: FinishSpec,
                     x264_preset: X264Preset = DELIVERY_X264_PRESET) -> PictureEncoding:
    """An intermediate's lossless encoding (its preset fixed: lossless at any speed), or
    delivery's at `x264_preset`."""
    if spec.intermediate:
        return INTERMEDIATE
    return dataclasses.replace(DELIVERY, options={**DELIVERY.options, "preset": x264_preset})


def finish_size(src_w: int, src_h: int, spec: FinishSpec) -> tuple[int, int]:
    """(width, height) of a finished file: the delivery size of its aspect, or for an
    intermediate the aspect's crop of the render, unscaled."""
    if spec.intermediate:
        crop_w, crop_h, _, _ = crop_box(src_w, src_h, spec.aspect, spec.focus)
        return crop_w, crop_h
    return TARGET_SIZES[spec.aspect]


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A PCM (8/16/32-bit) or float WAV as float64 (channels, samples) in [-1, 1], and its
    sample rate (ffmpeg writes float WAVs for float sources, the clip writer 16-bit ones)."""
    try:
        rate, data = wavfile.read(str(path))
    except ValueError as err:
        raise MediaError(f"{path}: not a readable WAV file ({err})") from err
    scale = {np.dtype("int16"): 2.0**15, np.dtype("int32"): 2.0**31}
    if data.dtype == np.uint8:
        samples = (data.astype(np.float64) - 128.0) / 128.0
    elif data.dtype in scale:
        samples = data.astype(np.float64) / scale[data.dtype]
    elif np.issubdtype(data.dtype, np.floating):
        samples = data.astype(np.float64)
    else:
        raise MediaError(f"{path}: unsupported WAV sample type {data.dtype}")
    return samples.reshape(len(samples), -1).T, int(rate)


def write_wav(audio: np.ndarray, sample_rate: int, path: Path) -> Path:
    """16-bit PCM WAV of float audio (channels, samples) in [-1, 1]."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(pcm.shape[0])
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.T.tobytes())
    return path


# ---- loudness ---------------------------------------------------------------------------------
# Integrated loudness is measured with pyloudnorm (ITU-R BS.1770, the meter QC uses too); the
# measured gain is applied by ffmpeg with `volume` and a limiter run at 4x the sample rate so true
# peaks stay under the target, and the result is measured again and corrected. loudnorm's own
# normalisation is not used because it cannot normalise clips shorter than its 3 s window (our
# clips are 1-8 s) and falls back to leaving the level unchanged when the linear gain would exceed
# the true-peak limit. True peak (4x oversampled) is still measured by ffmpeg's loudnorm, which
# pyloudnorm does not offer.

# DC and subsonic rumble carry no loudness (K-weighting ignores them) but eat true-peak headroom.
HIGHPASS_HZ = 20
# Below the true-peak target, for AAC's encoding overshoot: 1 dB let a spot of the demo
# model's limited speech reach -0.9 dBTP after encoding (2026-12-04).
PEAK_HEADROOM_DB = 1.5
LOUDNESS_SETTLE_LU = 0.3  # correct again when a pass lands further than this from the target
MAX_CORRECTIONS = 4
MAX_GAIN_PER_LU = 4.0


def gain_filter(gain_db: float, target: LoudnessTarget) -> str:
    """volume, then a limiter at 4x oversampling (a true-peak estimate) back at 48 kHz."""
    limit = 10 ** ((target.true_peak_dbtp - PEAK_HEADROOM_DB) / 20)
    return (f"highpass=f={HIGHPASS_HZ},volume={gain_db:.2f}dB,aresample={4 * AUDIO_RATE},"
            f"alimiter=limit={limit:.4f}:level=disabled:attack=1:release=50,"
            f"aresample={AUDIO_RATE}")


def normalize_loudness(wav: Path, target: LoudnessTarget, out: Path) -> tuple[float | None,
                                                                               float | None]:
    """Write `out` at the target loudness; returns (input LUFS, output LUFS) as measured."""
    before = integrated_lufs(*read_wav(wav))
    if before is None:  # digital silence: nothing to normalise; QC reports it
        run_ffmpeg(["-y", "-i", str(wav), "-af", f"aresample={AUDIO_RATE}", str(out)])
        return None, None
    gain, after = target.integrated_lufs - before, before
    tried: tuple[float, float] = (0.0, before)  # (gain, loudness): no gain gives the input
    for _ in range(1 + MAX_CORRECTIONS):
        run_ffmpeg(["-y", "-i", str(wav), "-af", gain_filter(gain, target), str(out)])
        after = integrated_lufs(*read_wav(out)) or after
        if abs(after - target.integrated_lufs) <= LOUDNESS_SETTLE_LU:
            break
        # The limiter eats part of any gain on peaky sound (a few LU short after three passes,
        # 2026-12-04): step by the gain per LU the last two passes showed (secant), at least
        # 1 dB per LU and at most MAX_GAIN_PER_LU.
        last_gain, last_after = tried
        slope = (gain - last_gain) / (after - last_after) if after != last_after else 1.0
        tried = (gain, after)
        gain += (target.integrated_lufs - after) * min(max(slope, 1.0), MAX_GAIN_PER_LU)
    return before, after


# ---- captions ---------------------------------------------------------------------------------


def _timestamp(seconds: float, separator: str) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def to_srt(cues: list[CaptionCue]) -> str:
    return "".join(f"{i}\n{_timestamp(c.start_s, ',')} --> {_timestamp(c.end_s, ',')}\n"
                   + "\n".join(c.lines) + "\n\n" for i, c in enumerate(cues, start=1))


def vtt_text(line: str) -> str:
    """A caption line as WebVTT cue text: `&`, `<` and `>` escaped, so a line with '-->' or
    '<b>' in it is shown as written (unescaped, '-->' ends the cue's text for a player)."""
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: list[CaptionCue]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{_timestamp(c.start_s, '.')} --> {_timestamp(c.end_s, '.')}\n"
        + "\n".join(vtt_text(line) for line in c.lines) + "\n\n" for c in cues)


# ---- encode -----------------------------------------------------------------------------------


def build_encode_args(*, src_size: tuple[int, int], frames: int, fps: float, wav: Path,
                      srt: Path | None, overlay: Path | None, out: Path,
                      spec: FinishSpec, burned: tuple[Path, Path] | None = None,
                      x264_preset: X264Preset = DELIVERY_X264_PRESET) -> list[str]:
    """ffmpeg arguments: raw RGB frames on stdin + normalised WAV (+ SRT) -> H.264 High /
    AAC-LC MP4 with BT.709 tags, 2 s GOP, language tags and faststart.

    burned=(overlay, path) adds a second output from the same run: the cropped and scaled
    picture is split, drawn with that overlay (captions burned in) and encoded without the soft
    subtitle track. One run reads and scales the frames once and encodes both files at once.
    """
    src_w, src_h = src_size
    target_w, target_h = finish_size(src_w, src_h, spec)
    crop_w, crop_h, x, y = crop_box(src_w, src_h, spec.aspect, spec.focus)
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{src_w}x{src_h}",
                         framerate=fps)
    scaled = (video.filter("crop", crop_w, crop_h, x, y)
              .filter("scale", target_w, target_h, flags="lanczos")
              .filter("setsar", 1))
    branches = scaled.split() if burned is not None else None
    sound = ffmpeg.input(str(wav)).audio
    language = iso639_2(spec.locale)
    encoding = picture_encoding(spec, x264_preset)
    options: dict[str, object] = {
        **encoding.options,
        "g": round(GOP_SECONDS * fps), "keyint_min": round(GOP_SECONDS * fps),
        "colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709",
        "color_range": "tv", "acodec": "aac", "profile:a": "aac_low", "b:a": "192k",
        "ar": AUDIO_RATE, "ac": 2, "metadata:s:a:0": f"language={language}",
        "movflags": "+faststart",
        # Bound by the picture's duration (-shortest would also count the subtitle track).
        "t": f"{frames / fps:.6f}",
    }
    return master_and_burned_args(scaled, branches, sound, options, language=language,
                                  srt=srt, overlay=overlay, out=out, burned=burned,
                                  pix_fmt=encoding.pix_fmt)


def master_and_burned_args(picture: ffmpeg.nodes.FilterableStream,
                           branches: ffmpeg.nodes.FilterableStream | None,
                           sound: ffmpeg.nodes.FilterableStream, options: dict[str, object], *,
                           language: str, srt: Path | None, overlay: Path | None, out: Path,
                           burned: tuple[Path, Path] | None,
                           pix_fmt: str = "yuv420p") -> list[str]:
    """The arguments of one ffmpeg run writing the master (`overlay` drawn, the SRT as a soft
    track) and, with `burned`=(overlay, path) and `branches` (the picture split in two), the
    variant drawn with that overlay and no subtitle track."""
    streams = [finished_picture(branches[0] if branches is not None else picture, overlay,
                                pix_fmt), sound]
    main_options = dict(options)
    if srt is not None:
        streams.append(ffmpeg.input(str(srt))["s"])
        main_options.update({"scodec": "mov_text", "metadata:s:s:0": f"language={language}"})
    outputs = [ffmpeg.output(*streams, str(out), **main_options)]
    if burned is not None:
        assert branches is not None
        burned_overlay, burned_out = burned
        outputs.append(ffmpeg.output(finished_picture(branches[1], burned_overlay, pix_fmt), sound,
                                     str(burned_out), **options))
    args: list[str] = ffmpeg.merge_outputs(*outputs).overwrite_output().compile()
    return args[1:]  # drop the "ffmpeg" word: run_ffmpeg adds the bundled binary


def finished_picture(picture: ffmpeg.nodes.FilterableStream, overlay: Path | None,
                     pix_fmt: str = "yuv420p") -> ffmpeg.nodes.FilterableStream:
    """Overlay (when given), the pixel format (4:2:0 for delivery) and BT.709 tags on a
    cropped and scaled picture."""
    if overlay is not None:  # on-screen text (and burned-in captions) drawn by libass
        picture = picture.filter("ass", str(overlay))
    return (picture.filter("format", pix_fmt)
            # BT.709 on the frames themselves: the encoder writes the VUI from them.
            .filter("setparams", color_primaries="bt709", color_trc="bt709",
                    colorspace="bt709", range="tv"))


def finish_clip(frames: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int,
                spec: FinishSpec, workdir: Path, name: str = "deliverable",
                timings: dict[str, float] | None = None,
                x264_preset: X264Preset = DELIVERY_X264_PRESET) -> FinishResult:
    """Encode one deliverable from raw frames (T, H, W, 3) and audio (C, N); QC the result.
    `timings`, when given, receives the wall seconds of each stage (loudness, encode, qc)."""
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[f"{stage}_s"] = now - clock[0]
        clock[0] = now

    workdir.mkdir(parents=True, exist_ok=True)
    wav = write_wav(audio, sample_rate, workdir / f"{name}.raw.wav")
    # 1. loudness: measure, apply, verify
    normalized = workdir / f"{name}.wav"
    loudness_in, _ = normalize_loudness(wav, spec.loudness, normalized)
    lap("loudness")
    # 2. caption sidecars
    srt = vtt = None
    if spec.captions:
        srt = workdir / f"{name}.srt"
        srt.write_text(to_srt(spec.captions), encoding="utf-8")
        vtt = workdir / f"{name}.vtt"
        vtt.write_text(to_vtt(spec.captions), encoding="utf-8")
    # 3. encode: on-screen text burned in, captions as a soft track; with captions, the variant
    #    with them burned in too (when asked for), from the same ffmpeg run
    out = workdir / f"{name}.mp4"
    src_h, src_w = frames.shape[1], frames.shape[2]
    target_w, target_h = finish_size(src_w, src_h, spec)
    duration = frames.shape[0] / fps
    fonts = {"FONTCONFIG_FILE": str(fontconfig_file(workdir / ".fonts"))}
    raw = np.ascontiguousarray(frames).tobytes()
    overlay: Path | None = None
    if not spec.intermediate:  # an intermediate has nothing to draw (its spot draws the text)
        overlay = workdir / f"{name}.ass"
        overlay.write_text(build_ass(width=target_w, height=target_h, locale=spec.locale,
                                     duration_s=duration, captions=[],
                                     on_screen=spec.on_screen_text), encoding="utf-8")
    burned = None
    if spec.captions and spec.burned_variant:
        burned = workdir / f"{name}.burned.mp4"
        burned_overlay = workdir / f"{name}.burned.ass"
        burned_overlay.write_text(build_ass(width=target_w, height=target_h,
                                            locale=spec.locale, duration_s=duration,
                                            captions=spec.captions,
                                            on_screen=spec.on_screen_text), encoding="utf-8")
    args = build_encode_args(src_size=(src_w, src_h), frames=frames.shape[0], fps=fps,
                             wav=normalized, srt=srt, overlay=overlay, out=out, spec=spec,
                             burned=(burned_overlay, burned) if burned else None,
                             x264_preset=x264_preset)
    run_ffmpeg(args, stdin=raw, env=fonts)
    lap("encode")
    # 4. measure again and check the file: one ffmpeg analysis pass (picture, frame count,
    #    true peak) and one audio decode (the BS.1770 meter) serve QC and the result alike
    analysis = file_analysis(out)
    decoded, decoded_rate = decode_audio(out)
    crop_w, crop_h, _, _ = crop_box(src_w, src_h, spec.aspect, spec.focus)
    delivery_w, delivery_h = TARGET_SIZES[spec.aspect]
    encoding = picture_encoding(spec)
    report = run_qc(probe(out), out, expected_frames=frames.shape[0], fps=fps,
                    width=target_w, height=target_h, target=spec.loudness,
                    captions=vtt, source_audio=audio, analysis=analysis,
                    decoded=(decoded, decoded_rate), video_format=(encoding.profile,
                                                                   encoding.pix_fmt))
    lap("qc")
    return FinishResult(
        video_path=str(out), burned_path=str(burned) if burned else None,
        srt_path=str(srt) if srt else None,
        vtt_path=str(vtt) if vtt else None, width=target_w, height=target_h,
        # upscaled to the delivery size (for an intermediate: by its spot)
        preview=crop_w < delivery_w or crop_h < delivery_h,
        loudness_in_lufs=loudness_in,
        loudness_out_lufs=integrated_lufs(decoded, decoded_rate),
        # ebur128's true peak (4x oversampled, BS.1770 annex 2) from the analysis pass; the
        # separate loudnorm measuring pass it replaces used the same oversampling
        true_peak_out_dbtp=analysis.true_peak_dbtp, qc=report,
    )

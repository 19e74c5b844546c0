"""QC gate on an encoded deliverable: what a media operations team checks before shipping."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import numpy as np

from infra.images import BAR_SHARE, bars
from infra.media import MediaAnalysis, MediaProbe, analyze_media, decode_audio, seconds_before
from schemas.finishing import LoudnessTarget, QCCheck, QCReport
from tasks import photosensitivity

BLACK_LUMA = 16.0  # mean luma (0-255) under which a picture counts as black
FROZEN_DIFF = 0.5  # mean absolute frame difference under which the picture is frozen
SILENCE_DBFS = -60.0
CLIPPED_FRACTION = 0.001  # share of samples at full scale that means clipping
LOUDNESS_TOLERANCE_LU = 1.0
# Stereo a phone can play: no channel 30 dB under the other over the clip (one dead side), and
# the mono downmix at most 6 dB under the stereo level (a channel correlation above -0.5; an
# inverted channel cancels in mono, and most phones play a spot through one speaker). A
# judgement call: uncorrelated stereo loses 3 dB in mono, so only sound fighting itself fails.
DEAD_CHANNEL_DB = 30.0
MONO_LOSS_DB = 6.0
GATING_BLOCK_S = 0.4  # BS.1770's block: shorter audio has no integrated loudness
# On an encoded file the picture checks run as ffmpeg filters in the one analysis pass. A pixel
# is black under the same luma (16 of 255, as a share of the luma range); blackdetect judges a
# frame black when this share of its pixels is (its default), and the file fails when its
# picture is black throughout (all but at most one frame), as a mean luma under 16 over a
# uniform clip does. freezedetect's noise floor is the same 0.5-level mean frame difference.
BLACK_PIXEL_SHARE = 0.98
# A file fails when its picture is black, or still, for half its length or more. A judgement
# call, made as a demanding marketing team would: a fade or a held beat is fine, a render that
# goes dark or stops moving for half its length is broken, and one frame of flash or motion in
# it does not save it (the test was "throughout", which a single differing frame passed).
MAX_FAULTY_PICTURE_SHARE = 0.5
_VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def _check(name: str, passed: bool, measured: object, expected: object) -> QCCheck:
    return QCCheck(name=name, passed=bool(passed), measured=str(measured),
                   expected=str(expected))


def picture_checks(frames: np.ndarray) -> list[QCCheck]:
    """Black and frozen picture from decoded RGB frames (T, H, W, 3)."""
    luma = (frames[..., :3].astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722])).mean()
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3)) \
        if len(frames) > 1 else np.array([np.inf])
    return [
        _check("black_picture", luma >= BLACK_LUMA, f"mean luma {luma:.1f}",
               f">= {BLACK_LUMA}"),
        _check("frozen_picture", diffs.max() >= FROZEN_DIFF,
               f"max frame difference {diffs.max():.2f}", f">= {FROZEN_DIFF}"),
    ]


def integrated_lufs(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness (LUFS) of float audio (channels, samples); None for digital silence
    or audio shorter than one gating block."""
    if audio.shape[-1] < GATING_BLOCK_S * sample_rate:
        return None
    import pyloudnorm  # here, not at the top: it imports scipy.signal (~2 s of every CLI start)

    with np.errstate(divide="ignore"):  # silence: log10(0) = -inf, reported as None
        loudness = float(pyloudnorm.Meter(sample_rate).integrated_loudness(audio.T))
    return loudness if np.isfinite(loudness) else None


def sound_checks(audio: np.ndarray, sample_rate: int, target: LoudnessTarget,
                 source_audio: np.ndarray | None = None) -> list[QCCheck]:
    """Silence, clipping, integrated loudness (ITU-R BS.1770 via pyloudnorm) and stereo
    (`stereo_check`, on the finished sound). Silence and
    clipping are judged on the rendered source when given: loudness processing lowers the peaks
    of a clipped render but cannot restore its flattened waveform, and raises a render's hiss
    at -70 dBFS to the target like any sound (judged after it, only digital silence failed)."""
    judged = audio if source_audio is None else source_audio
    rms = float(np.sqrt(np.mean(np.square(judged)))) if judged.size else 0.0
    rms_dbfs = 20 * np.log10(rms) if rms > 0 else -np.inf
    clipped = float(np.mean(np.abs(judged) >= 0.999)) if judged.size else 0.0
    measured = integrated_lufs(audio, sample_rate)
    loudness = float("-inf") if measured is None else measured
    low = target.integrated_lufs - LOUDNESS_TOLERANCE_LU
    high = target.integrated_lufs + LOUDNESS_TOLERANCE_LU
    return [
        _check("silence", rms_dbfs > SILENCE_DBFS, f"{rms_dbfs:.1f} dBFS RMS"
               + ("" if source_audio is None else " as rendered"),
               f"> {SILENCE_DBFS} dBFS"),
        _check("clipping", clipped < CLIPPED_FRACTION, f"{clipped:.4%} samples at full scale",
               f"< {CLIPPED_FRACTION:.1%}"),
        _check("loudness", low <= loudness <= high, f"{loudness:.1f} LUFS",
               f"{target.integrated_lufs:.0f} ± {LOUDNESS_TOLERANCE_LU:.0f} LUFS"),
        stereo_check(audio),
    ]


def stereo_check(audio: np.ndarray) -> QCCheck:
    """One dead channel, or channels in opposite phase, in (channels, samples) audio; mono and
    silent audio pass (silence is its own check)."""
    samples = audio.astype(np.float64)
    powers = np.mean(np.square(samples), axis=-1) if audio.size else []
    if len(powers) != 2 or not max(powers) > 0:
        return _check("stereo", True, f"{len(powers)} channel(s)", "both channels, in phase")
    with np.errstate(divide="ignore"):
        balance_db = float(10 * np.log10(max(powers) / min(powers)))
        mono_db = float(10 * np.log10(np.mean(np.square(samples.mean(axis=0)))
                                      / np.mean(powers)))
    return _check("stereo", balance_db < DEAD_CHANNEL_DB and mono_db > -MONO_LOSS_DB,
                  f"channels {balance_db:.1f} dB apart, mono downmix {mono_db:.1f} dB",
                  f"< {DEAD_CHANNEL_DB:.0f} dB apart, mono > -{MONO_LOSS_DB:.0f} dB")


def caption_problems(vtt_text: str, duration_s: float | None = None,
                     tolerance_s: float = 0.0) -> list[str]:
    """Problems in a WebVTT file: header, timestamps, ordering, empty cues, and with the
    clip's `duration_s`, cues ending more than `tolerance_s` after it (a line timed past the
    picture is cut short or never shown)."""
    if not vtt_text.startswith("WEBVTT"):
        return ["missing WEBVTT header"]
    problems, previous_end = [], -1.0
    for block in vtt_text.strip().split("\n\n")[1:]:
        lines = block.splitlines()
        match = re.fullmatch(rf"{_VTT_TIME} --> {_VTT_TIME}", lines[0]) if lines else None
        if match is None:
            problems.append(f"bad cue timing line {lines[0] if lines else ''!r}")
            continue
        g = [int(x) for x in match.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        if end <= start or start < previous_end:
            problems.append(f"cue {lines[0]} overlaps or runs backwards")
        if duration_s is not None and end > duration_s + tolerance_s + 1e-3:
            problems.append(f"cue {lines[0]} runs past the end of the clip "
                            f"({duration_s:.3f} s)")
        if len(lines) < 2 or not all(line.strip() for line in lines[1:]):
            problems.append(f"cue {lines[0]} has no text")
        if any("-->" in line for line in lines[1:]):  # WebVTT forbids it in cue text
            problems.append(f"cue {lines[0]} has '-->' in its text")
        previous_end = end
    return problems


def file_analysis(path: Path) -> MediaAnalysis:
    """The one ffmpeg pass QC needs over an encoded file (picture, frame count, true peak)."""
    return analyze_media(path, black_luma=BLACK_LUMA / 255, black_share=BLACK_PIXEL_SHARE,
                         freeze_noise=FROZEN_DIFF / 255)


def file_picture_checks(analysis: MediaAnalysis, fps: float,
                        held_s: float = 0.0) -> list[QCCheck]:
    """Black and still picture from the analysis pass: each fails when its stretches add up to
    MAX_FAULTY_PICTURE_SHARE of the picture or more (a single frame cannot be frozen).
    `held_s`: seconds meant to be still at the end (a spot's end card): only the picture
    before them is judged, by where each stretch lies (a dark scene before a bright card
    counts in full; the card itself, whatever its colour, does not)."""
    judged_s = analysis.video_s - held_s
    limit = MAX_FAULTY_PICTURE_SHARE * judged_s
    black_s, frozen_s = (seconds_before(spans, judged_s)
                         for spans in (analysis.black_spans, analysis.frozen_spans))
    black = analysis.frames == 0 or black_s >= limit - 1e-6
    frozen = analysis.frames > 1 and frozen_s >= limit - 1e-6
    span = f"of {analysis.video_s:.2f} s" + (
        f" (the first {judged_s:.2f} s judged, {held_s:.2f} s held)" if held_s else "")
    share = f"under {MAX_FAULTY_PICTURE_SHARE:.0%} of the picture"
    return [
        _check("black_picture", not black, f"black {black_s:.2f} s {span}",
               f"black {share} (luma < {BLACK_LUMA:.0f} on {BLACK_PIXEL_SHARE:.0%} of "
               "pixels)"),
        _check("frozen_picture", not frozen, f"still {frozen_s:.2f} s {span}",
               f"still {share} (frame difference < {FROZEN_DIFF})"),
        *flash_checks(analysis, fps),
        border_check(analysis),
    ]


def border_check(analysis: MediaAnalysis) -> QCCheck:
    """Black bars (infra.images.bars): letterboxing or pillarboxing through the whole file,
    e.g. from a first frame that had bars, which the render then kept."""
    expected = (f"no bars: two opposite edge bands, each {BAR_SHARE:.0%} of the side or more, "
                "near-black in every frame")
    if analysis.picture_size is None or not len(analysis.fill_rows):
        return _check("black_borders", True, "no picture", expected)
    found = bars(analysis.fill_rows, analysis.fill_columns, analysis.picture_size)
    return _check("black_borders", not found, "; ".join(found) or "none", expected)


def _in_the_worst_second(count: int, flash: str) -> str:
    return f"{count} {flash}{'es' if count != 1 else ''} in the worst second"


def flash_checks(analysis: MediaAnalysis, fps: float) -> list[QCCheck]:
    """Flashing picture over the whole file, end card included (tasks.photosensitivity)."""
    cells = photosensitivity.linear_cells(analysis.luma_cells)
    luminance = cells.mean(axis=1)
    # the mean reading and the area reading (see the module): the worse of the two
    flashes = max(photosensitivity.most_flashes_in_a_second(luminance, fps),
                  photosensitivity.most_area_flashes_in_a_second(cells, fps))
    single = sorted(set(photosensitivity.one_frame_flashes(luminance))
                    | set(photosensitivity.one_frame_flashes_by_area(cells)))
    red = photosensitivity.most_red_flashes_in_a_second(analysis.rgb_cells, fps)
    change = (f"a change of {photosensitivity.FLASH_CHANGE:.0%} of peak white, over the "
              f"screen's mean or over {photosensitivity.FLASH_AREA:.0%} of it")
    return [
        _check("flashes", flashes <= photosensitivity.MAX_FLASHES_PER_SECOND,
               _in_the_worst_second(flashes, "flash"),
               f"at most {photosensitivity.MAX_FLASHES_PER_SECOND} a second (ITU-R BT.1702; "
               f"a flash: two opposing changes of {change})"),
        _check("one_frame_flash", not single,
               "frames " + ", ".join(f"{i} ({i / fps:.2f} s)" for i in single) if single
               else "none", f"no single frame apart from both neighbours by {change}"),
        _check("red_flashes", red <= photosensitivity.MAX_FLASHES_PER_SECOND,
               _in_the_worst_second(red, "red flash"),
               f"at most {photosensitivity.MAX_FLASHES_PER_SECOND} a second (ITU-R BT.1702's "
               "red flash, as WCAG 2.2 words it: two opposing changes to or from a saturated "
               f"red, {photosensitivity.RED_CHANGE} apart in CIE u'v', over "
               f"{photosensitivity.FLASH_AREA:.0%} of the screen)"),
    ]


def run_qc(media: MediaProbe, path: Path, *, expected_frames: int, fps: float, width: int,
           height: int, target: LoudnessTarget, captions: Path | None,
           source_audio: np.ndarray | None = None, analysis: MediaAnalysis | None = None,
           decoded: tuple[np.ndarray, int] | None = None,
           video_format: tuple[str, str] = ("High", "yuv420p"),
           held_s: float = 0.0) -> QCReport:
    """Every check on one encoded file. The picture is analysed by ffmpeg in one pass
    (`file_analysis`); the audio is decoded once for the BS.1770 meter. A caller that already
    has either passes it in (`analysis`, `decoded` = (samples, rate) of this file).
    `video_format` is the (H.264 profile, pixel format) expected: delivery's by default;
    `held_s` the still picture planned at the end (a spot's end card)."""
    checks: list[QCCheck] = []
    expected_s = expected_frames / fps
    checks.append(_check("duration", abs(media.duration_s - expected_s) <= 1 / fps + 1e-3,
                         f"{media.duration_s:.3f} s", f"{expected_s:.3f} ± 1 frame"))
    video, audio = media.video, media.audio
    checks.append(_check("resolution", video is not None and (video.width, video.height) ==
                         (width, height), f"{video.width}x{video.height}" if video else "none",
                         f"{width}x{height}"))
    profile, pix_fmt = video_format
    video_ok = video is not None and video.codec == "h264" and video.profile == profile \
        and video.pix_fmt == pix_fmt
    checks.append(_check("video_codec", video_ok,
                         f"{video.codec} {video.profile} {video.pix_fmt}" if video else "none",
                         f"h264 {profile} {pix_fmt}"))
    audio_ok = audio is not None and audio.codec == "aac" and audio.sample_rate == 48_000 \
        and audio.channels == 2
    checks.append(_check("audio_codec", audio_ok,
                         f"{audio.codec} {audio.sample_rate} Hz {audio.channels} ch"
                         if audio else "none", "aac 48000 Hz 2 ch"))
    checks.append(_check("faststart", media.faststart, media.faststart, True))
    analysis = analysis or file_analysis(path)
    checks.append(_check("frame_count", analysis.frames == expected_frames, analysis.frames,
                         expected_frames))
    checks += file_picture_checks(analysis, fps, held_s)
    samples, rate = decoded or decode_audio(path)
    checks += sound_checks(samples, rate, target, source_audio)
    checks.append(true_peak_check(analysis, target))
    offset, av_tolerance_s = abs(samples.shape[1] / rate - expected_s), 1 / fps + 0.025
    checks.append(_check("av_offset", offset <= av_tolerance_s, f"{offset * 1000:.0f} ms",
                         f"<= {av_tolerance_s * 1000:.0f} ms"))
    if captions is not None:
        # cues are timed to the sound, which may run on as far as the A/V offset allows
        problems = caption_problems(captions.read_text(encoding="utf-8"), expected_s,
                                    av_tolerance_s)
        checks.append(_check("captions", not problems, "; ".join(problems) or "valid",
                             "valid WebVTT"))
    return QCReport(checks=checks)


def true_peak_check(analysis: MediaAnalysis, target: LoudnessTarget) -> QCCheck:
    """The encoded file's true peak (ebur128's 4x oversampled estimate, BS.1770 annex 2): AAC
    encoding can push a limited peak back over the ceiling; silence has none."""
    peak = analysis.true_peak_dbtp if analysis.true_peak_dbtp is not None else float("-inf")
    return _check("true_peak", peak <= target.true_peak_dbtp, f"{peak:.1f} dBTP",
                  f"<= {target.true_peak_dbtp:.0f} dBTP")


class QCAction(StrEnum):
    ACCEPT = "accept"
    RETRY = "retry"  # render again with the next seed
    FAIL = "fail"


def next_action(report: QCReport, attempt: int, max_retries: int) -> QCAction:
    """accept a passing file; otherwise retry with the next seed until the limit, then fail."""
    if report.passed:
        return QCAction.ACCEPT
    return QCAction.RETRY if attempt < max_retries else QCAction.FAIL

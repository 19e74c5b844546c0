"""The QC gate check by check: each threshold on both sides, each reason in its words, and
every check of `run_qc` failing on its own when only its property is wrong (one real encoded
file, with the probe's answers varied)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest

from infra.media import MediaProbe, StreamInfo, probe
from schemas.finishing import LoudnessTarget, QCCheck, QCReport
from tasks.qc import caption_problems, next_action, picture_checks, run_qc, sound_checks
from tests.tasks.test_finishing import FPS, RATE, _finish

WEB = LoudnessTarget(integrated_lufs=-14.0)


def _by_name(checks: list[QCCheck]) -> dict[str, QCCheck]:
    return {c.name: c for c in checks}


def _gray(values: list[float], size: tuple[int, int] = (8, 8)) -> np.ndarray:
    return np.stack([np.full((*size, 3), v, dtype=np.uint8) for v in values])


# ---- picture ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("level", "passed"), [(16, True), (15, False), (0, False), (200, True)])
def test_black_picture_threshold_is_mean_luma_16(level: int, passed: bool) -> None:
    frames = _gray([level, level])
    frames[1, 0, 0, 0] += 1  # not frozen; the mean luma stays just above `level`
    check = _by_name(picture_checks(frames))["black_picture"]
    assert check.passed is passed
    assert check.expected == ">= 16.0"


def test_a_mean_luma_of_exactly_16_is_not_black() -> None:
    check = _by_name(picture_checks(_gray([16, 16])))["black_picture"]
    assert check.passed and check.measured == "mean luma 16.0"


def test_an_alpha_channel_is_ignored() -> None:
    rgb = _gray([40, 41])
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:3], 1), 255, np.uint8)], axis=-1)
    assert picture_checks(rgba)[0] == picture_checks(rgb)[0]


def test_black_picture_uses_bt709_luma() -> None:
    # pure green at 22 has BT.709 luma 0.7152 * 22 = 15.7 (black), pure blue at 255 has 18.4
    green = np.zeros((2, 4, 4, 3), np.uint8)
    green[..., 1] = 22
    green[1, 0, 0, 0] = 1  # not frozen
    check = _by_name(picture_checks(green))["black_picture"]
    assert not check.passed and check.measured == "mean luma 15.7"
    blue = np.zeros((2, 4, 4, 3), np.uint8)
    blue[..., 2] = 255
    assert _by_name(picture_checks(blue))["black_picture"].measured == "mean luma 18.4"


def test_frozen_picture_threshold_is_half_a_level() -> None:
    still = _gray([100, 100, 100])
    moving = still.copy()
    moving[2, :4] += 1  # half the pixels of the last frame change by 1: mean difference 0.5
    frozen = _by_name(picture_checks(still))["frozen_picture"]
    assert not frozen.passed and frozen.measured == "max frame difference 0.00"
    assert frozen.expected == ">= 0.5"
    check = _by_name(picture_checks(moving))["frozen_picture"]
    assert check.passed and check.measured == "max frame difference 0.50"
    barely = still.copy()
    barely[2, :3] += 1  # 3/8 of the pixels
    assert not _by_name(picture_checks(barely))["frozen_picture"].passed
    # differences are taken in signed arithmetic: 0 -> 255 is a change of 255, not of 1
    flip = _gray([0, 255])
    assert _by_name(picture_checks(flip))["frozen_picture"].measured == \
        "max frame difference 255.00"


def test_a_single_frame_is_not_frozen() -> None:
    assert _by_name(picture_checks(_gray([100])))["frozen_picture"].passed


# ---- sound -----------------------------------------------------------------------------------


def _tone(amplitude: float, seconds: float = 1.0, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.tile(amplitude * np.sin(2 * np.pi * 1000 * t), (channels, 1))


def test_silence_is_below_minus_60_dbfs_rms() -> None:
    quiet = _by_name(sound_checks(_tone(0.0012), RATE, WEB))["silence"]  # RMS -61.4 dBFS
    assert not quiet.passed and quiet.measured == "-61.4 dBFS RMS"
    assert quiet.expected == "> -60.0 dBFS"
    assert _by_name(sound_checks(_tone(0.0016), RATE, WEB))["silence"].passed  # -58.9
    zero = _by_name(sound_checks(np.zeros((2, RATE)), RATE, WEB))["silence"]
    assert not zero.passed and zero.measured == "-inf dBFS RMS"


def test_silence_is_judged_on_the_source_when_given() -> None:
    # a render of nothing but -70 dBFS hiss: normalisation lifts it to the target, where the
    # finished sound is far above -60 dBFS; what was rendered is silence all the same
    hiss = np.random.default_rng(0).standard_normal((2, RATE)) * 10 ** (-70 / 20)
    check = _by_name(sound_checks(_tone(0.2), RATE, WEB, source_audio=hiss))["silence"]
    assert not check.passed and check.measured == "-70.0 dBFS RMS as rendered"
    assert _by_name(sound_checks(_tone(0.2), RATE, WEB, source_audio=_tone(0.01)))[
        "silence"].passed


def test_a_dead_or_inverted_channel_fails_stereo() -> None:
    # on a phone's one speaker an inverted channel cancels the other: the spot plays silent
    tone = _tone(0.2)
    assert _by_name(sound_checks(tone, RATE, WEB))["stereo"].passed
    assert _by_name(sound_checks(tone[:1], RATE, WEB))["stereo"].passed  # mono
    noise = np.random.default_rng(0).standard_normal((2, RATE)) * 0.1
    assert _by_name(sound_checks(noise, RATE, WEB))["stereo"].passed  # uncorrelated: -3 dB
    inverted = tone * np.array([[1.0], [-1.0]])
    check = _by_name(sound_checks(inverted, RATE, WEB))["stereo"]
    assert not check.passed and "mono downmix -inf dB" in check.measured
    dead = tone * np.array([[1.0], [0.0]])
    check = _by_name(sound_checks(dead, RATE, WEB))["stereo"]
    assert not check.passed and check.measured.startswith("channels inf dB apart")
    assert check.expected == "< 30 dB apart, mono > -6 dB"


def test_clipping_is_a_thousandth_of_samples_at_full_scale() -> None:
    audio = _tone(0.5)
    audio[:, :95] = 0.9995  # 95 of 48000 per channel: 0.198 %
    check = _by_name(sound_checks(audio, RATE, WEB))["clipping"]
    assert not check.passed and check.measured == "0.1979% samples at full scale"
    assert check.expected == "< 0.1%"
    audio[:, 47:95] = 0.998  # 47 samples: 0.098 %
    assert _by_name(sound_checks(audio, RATE, WEB))["clipping"].passed
    audio[:, :48] = -1.0  # negative full scale counts too: exactly 0.1 %
    assert not _by_name(sound_checks(audio, RATE, WEB))["clipping"].passed


def test_a_sample_at_exactly_0_999_counts_as_full_scale() -> None:
    audio = _tone(0.5).astype(np.float64)
    audio[:, :96] = 0.999  # 0.2 % of the samples, exactly at the threshold
    assert not _by_name(sound_checks(audio, RATE, WEB))["clipping"].passed


def test_empty_or_all_zero_audio_is_reported_without_numpy_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a mean of nothing or log10(0) would warn
        empty = _by_name(sound_checks(np.zeros((2, 0), np.float32), RATE, WEB))
        zero = _by_name(sound_checks(np.zeros((2, RATE), np.float32), RATE, WEB))
    for checks in (empty, zero):
        assert not checks["silence"].passed and checks["silence"].measured == "-inf dBFS RMS"
        assert checks["clipping"].passed
        assert checks["clipping"].measured == "0.0000% samples at full scale"
    assert empty["loudness"].measured == "-inf LUFS"


def test_clipping_is_judged_on_the_source_when_given() -> None:
    clipped_source = np.clip(_tone(3.0), -1, 1)
    finished = _tone(0.3)
    assert not _by_name(sound_checks(finished, RATE, WEB, clipped_source))["clipping"].passed
    assert _by_name(sound_checks(finished, RATE, WEB))["clipping"].passed


def test_loudness_window_is_the_target_plus_minus_one_lu() -> None:
    # a full-scale 1 kHz sine on both channels measures about 0 LUFS: scale it to each level
    def at(lufs: float) -> QCCheck:
        return _by_name(sound_checks(_tone(10 ** (lufs / 20), 2.0), RATE, WEB))["loudness"]

    for level, passed in ((-14.0, True), (-13.2, True), (-14.8, True), (-12.7, False),
                          (-15.3, False)):
        assert at(level).passed is passed, level
    assert at(-14.0).expected == "-14 ± 1 LUFS"
    broadcast = _by_name(sound_checks(_tone(10 ** (-23.0 / 20), 2.0), RATE,
                                      LoudnessTarget(integrated_lufs=-23.0)))["loudness"]
    assert broadcast.passed and broadcast.expected == "-23 ± 1 LUFS"


def test_the_loudness_window_includes_both_bounds() -> None:
    audio = _tone(0.2, 2.0)
    measured = float(pyloudnorm.Meter(RATE).integrated_loudness(audio.T))
    for target, bound in ((measured + 1.0, "low"), (measured - 1.0, "high")):
        window = (target - 1.0, target + 1.0)
        assert measured == (window[0] if bound == "low" else window[1])  # exactly on the bound
        check = _by_name(sound_checks(audio, RATE, LoudnessTarget(integrated_lufs=target)))
        assert check["loudness"].passed, bound


def test_rms_of_exactly_minus_60_dbfs_is_silence() -> None:
    check = _by_name(sound_checks(np.full((2, RATE), 0.001), RATE, WEB))["silence"]
    assert not check.passed and check.measured == "-60.0 dBFS RMS"


def test_loudness_needs_at_least_400_ms() -> None:
    short = _by_name(sound_checks(_tone(0.2, seconds=0.39), RATE, WEB))["loudness"]
    assert not short.passed and short.measured == "-inf LUFS"
    for seconds in (0.4, 1.0):  # one BS.1770 gating block is enough
        measured = _by_name(sound_checks(_tone(0.2, seconds=seconds), RATE, WEB))["loudness"]
        assert measured.measured != "-inf LUFS", seconds


# ---- captions --------------------------------------------------------------------------------


def test_caption_problems_name_each_fault() -> None:
    good = "WEBVTT\n\n00:00:00.500 --> 00:00:01.000\nHello\n\n00:00:01.000 --> 00:00:02.000\nBye\n"
    assert caption_problems(good) == []
    assert caption_problems("WEBVTT\n\n0:00:00.500 --> 00:00:01.000\nHi\n") == [
        "bad cue timing line '0:00:00.500 --> 00:00:01.000'"]
    assert caption_problems("WEBVTT\n\n01:00:00.000 --> 00:59:59.999\nHi\n") == [
        "cue 01:00:00.000 --> 00:59:59.999 overlaps or runs backwards"]
    assert caption_problems("WEBVTT\n\n00:00:01.000 --> 00:00:01.000\nHi\n") == [
        "cue 00:00:01.000 --> 00:00:01.000 overlaps or runs backwards"]
    overlapping = ("WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nA\n\n"
                   "00:00:01.999 --> 00:00:03.000\nB\n")
    assert caption_problems(overlapping) == [
        "cue 00:00:01.999 --> 00:00:03.000 overlaps or runs backwards"]
    assert caption_problems("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n \n") == [
        "cue 00:00:00.000 --> 00:00:01.000 has no text"]
    assert caption_problems("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n") == [
        "cue 00:00:00.000 --> 00:00:01.000 has no text"]
    # hours, minutes and seconds all count: 1 h 1 min 1 s ends after 1 h 0 min 59 s
    # milliseconds count, to the millisecond: touching cues are fine, 1 ms of overlap is not
    touching = ("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nA\n\n"
                "00:00:01.500 --> 00:00:02.000\nB\n")
    assert caption_problems(touching) == []
    one_ms = ("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nA\n\n"
              "00:00:01.499 --> 00:00:02.000\nB\n")
    assert caption_problems(one_ms) == [
        "cue 00:00:01.499 --> 00:00:02.000 overlaps or runs backwards"]
    assert caption_problems("WEBVTT\n\n00:00:00.250 --> 00:00:00.400\nA\n") == []
    # every text line must have text, the second as well as the first
    assert caption_problems("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\n \nHi\n") == [
        "cue 00:00:00.000 --> 00:00:01.000 has no text"]
    # a bad cue does not hide the problems of the cues after it
    assert caption_problems("WEBVTT\n\nnonsense\nA\n\n00:00:01.000 --> 00:00:02.000\n") == [
        "bad cue timing line 'nonsense'", "cue 00:00:01.000 --> 00:00:02.000 has no text"]
    # a block left empty by extra blank lines is reported, not a crash
    assert caption_problems("WEBVTT\n\n\n\n00:00:00.000 --> 00:00:01.000\nHi\n") == [
        "bad cue timing line ''"]
    later = ("WEBVTT\n\n01:00:59.000 --> 01:01:01.000\nA\n\n"
             "01:01:01.000 --> 01:01:02.000\nB\n")
    assert caption_problems(later) == []


def test_a_cue_past_the_end_of_the_clip_is_a_problem() -> None:
    past = "WEBVTT\n\n00:00:02.500 --> 00:00:03.000\nNever shown\n"
    assert caption_problems(past, duration_s=2.0) == [
        "cue 00:00:02.500 --> 00:00:03.000 runs past the end of the clip (2.000 s)"]
    assert caption_problems(past) == []  # without the clip's duration nothing to compare
    assert caption_problems("WEBVTT\n\n00:00:01.500 --> 00:00:02.000\nLast\n",
                            duration_s=2.0) == []
    # timed to sound that runs on a little past the picture: within the tolerance given
    assert caption_problems("WEBVTT\n\n00:00:01.500 --> 00:00:02.050\nLast\n",
                            duration_s=2.0, tolerance_s=0.067) == []


# ---- the whole gate on an encoded file -------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MediaProbe, np.ndarray]:
    result, frames = _finish(tmp_path_factory.mktemp("qc"))
    path = Path(result.video_path)
    return path, probe(path), frames


def _checks(finished: tuple[Path, MediaProbe, np.ndarray], **changes: object
            ) -> dict[str, QCCheck]:
    path, media, frames = finished
    args: dict[str, object] = {"expected_frames": len(frames), "fps": FPS, "width": 1280,
                               "height": 720, "target": WEB, "captions": None}
    media = replace(media, **changes.pop("media", {}))  # type: ignore[arg-type]
    args.update(changes)
    report = run_qc(media, path, **args)  # type: ignore[arg-type]
    return {c.name: c for c in report.checks}


def _gate(finished: tuple[Path, MediaProbe, np.ndarray], **changes: object) -> dict[str, bool]:
    return {name: check.passed for name, check in _checks(finished, **changes).items()}


def test_a_good_file_passes_every_check(finished: tuple[Path, MediaProbe, np.ndarray],
                                        tmp_path: Path) -> None:
    vtt = tmp_path / "c.vtt"
    vtt.write_text("WEBVTT\n\n00:00:00.200 --> 00:00:01.600\nJeder Morgen\n")
    checks = _gate(finished, captions=vtt)
    assert checks == dict.fromkeys(
        ["duration", "resolution", "video_codec", "audio_codec", "faststart", "frame_count",
         "black_picture", "frozen_picture", "flashes", "one_frame_flash", "red_flashes",
         "black_borders",
         "silence", "clipping", "loudness", "stereo", "true_peak", "av_offset", "captions"], True)
    good = _checks(finished, captions=vtt)["captions"]
    assert (good.measured, good.expected) == ("valid", "valid WebVTT")
    vtt.write_text("not a vtt")
    bad = _checks(finished, captions=vtt)["captions"]
    assert not bad.passed
    assert (bad.measured, bad.expected) == ("missing WEBVTT header", "valid WebVTT")
    vtt.write_text("WEBVTT\n\n00:00:01.500 --> 00:00:03.000\nJeder Morgen\n")
    late = _checks(finished, captions=vtt)["captions"]  # the file lasts 2 s
    assert not late.passed and "runs past the end of the clip (2.000 s)" in late.measured
    vtt.write_text("WEBVTT\n\nnonsense\nA\n\n00:00:02.000 --> 00:00:01.000\nB\n")
    assert _checks(finished, captions=vtt)["captions"].measured == (
        "bad cue timing line 'nonsense'; cue 00:00:02.000 --> 00:00:01.000 overlaps or runs "
        "backwards")


def _silence(seconds: float, rate: int = 48_000) -> tuple[np.ndarray, int]:
    return np.zeros((2, round(seconds * rate)), np.float32), rate


def test_sound_and_picture_may_be_apart_by_one_frame_and_25_ms(
        finished: tuple[Path, MediaProbe, np.ndarray]) -> None:
    # 48 frames at 24 fps = 2 s: the tolerance is 1/24 s + 25 ms = 67 ms
    within = _checks(finished, decoded=_silence(2.06))["av_offset"]
    assert within.passed and (within.measured, within.expected) == ("60 ms", "<= 67 ms")
    beyond = _checks(finished, decoded=_silence(2.07))["av_offset"]
    assert not beyond.passed and beyond.measured == "70 ms"
    early = _checks(finished, decoded=_silence(1.4))["av_offset"]
    assert not early.passed and early.measured == "600 ms"
    # exactly at the bound (2 frames = 1/12 s of picture, 7200 samples = 0.15 s of sound: the
    # float difference equals the tolerance exactly) still passes
    assert abs(7200 / 48_000 - 2 / 24) == 1 / 24 + 0.025
    assert _checks(finished, expected_frames=2, decoded=_silence(0.15))["av_offset"].passed
    # the tolerance follows the frame rate: at 1 fps it is 1 s + 25 ms
    assert _checks(finished, fps=1.0)["av_offset"].expected == "<= 1025 ms"


def _only_failure(checks: dict[str, bool]) -> set[str]:
    return {name for name, passed in checks.items() if not passed}


@pytest.mark.parametrize(("changes", "failing"), [
    ({"media": {"duration_s": 2.0 + 1.5 / 24}}, {"duration"}),
    ({"media": {"duration_s": 2.0 + 0.9 / 24}}, set()),
    ({"media": {"duration_s": 2.0 + 1 / 24}}, set()),  # one frame off is within tolerance
    ({"media": {"duration_s": 2.0 - 1 / 24 - 0.0005}}, set()),  # plus up to 1 ms of rounding
    ({"media": {"duration_s": 2.0 + 1 / 24 + 0.0015}}, {"duration"}),
    ({"width": 1920}, {"resolution"}),
    ({"height": 1080}, {"resolution"}),
    ({"media": {"faststart": False}}, {"faststart"}),
    ({"expected_frames": 47, "media": {"duration_s": 47 / 24}}, {"frame_count"}),
    ({"expected_frames": 49, "media": {"duration_s": 49 / 24}}, {"frame_count"}),
    ({"expected_frames": 40, "media": {"duration_s": 40 / 24}}, {"frame_count", "av_offset"}),
    # a scene finish's true peak is checked as a spot's is (only spots were, so a cut-down
    # over its ceiling was published): a ceiling under the file's peak fails it alone
    ({"target": LoudnessTarget(integrated_lufs=-14.0, true_peak_dbtp=-30.0)}, {"true_peak"}),
])
def test_each_check_fails_alone(finished: tuple[Path, MediaProbe, np.ndarray],
                                changes: dict[str, object], failing: set[str]) -> None:
    assert _only_failure(_gate(finished, **changes)) == failing


def test_the_duration_tolerance_includes_its_bound(
        finished: tuple[Path, MediaProbe, np.ndarray]) -> None:
    # a one-frame clip whose duration is off by exactly the tolerance (1 frame + 1 ms); with
    # these values the float difference equals the tolerance exactly
    tolerance = 1 / 24 + 1e-3
    assert abs((1 / 24 + tolerance) - 1 / 24) == tolerance
    checks = _gate(finished, expected_frames=1, media={"duration_s": 1 / 24 + tolerance})
    assert checks["duration"] is True


@pytest.mark.parametrize(("field", "value", "failing"), [
    ("codec", "hevc", "video_codec"), ("profile", "Main", "video_codec"),
    ("pix_fmt", "yuv444p", "video_codec"),
])
def test_video_codec_fields(finished: tuple[Path, MediaProbe, np.ndarray], field: str,
                            value: str, failing: str) -> None:
    video = replace(finished[1].video, **{field: value})  # type: ignore[arg-type]
    assert _only_failure(_gate(finished, media={"video": video})) == {failing}


@pytest.mark.parametrize(("field", "value"), [("codec", "mp3"), ("sample_rate", 44_100),
                                              ("channels", 1)])
def test_audio_codec_fields(finished: tuple[Path, MediaProbe, np.ndarray], field: str,
                            value: object) -> None:
    audio = replace(finished[1].audio, **{field: value})  # type: ignore[arg-type]
    assert _only_failure(_gate(finished, media={"audio": audio})) == {"audio_codec"}


def test_missing_streams_fail_with_none(finished: tuple[Path, MediaProbe, np.ndarray]) -> None:
    path, media, frames = finished
    report = run_qc(replace(media, video=None, audio=None), path, expected_frames=len(frames),
                    fps=FPS, width=1280, height=720, target=WEB, captions=None)
    checks = {c.name: c for c in report.checks}
    for name in ("resolution", "video_codec", "audio_codec"):
        assert not checks[name].passed and checks[name].measured == "none", name
    assert checks["video_codec"].expected == "h264 High yuv420p"
    assert checks["audio_codec"].expected == "aac 48000 Hz 2 ch"
    assert checks["resolution"].expected == "1280x720"


def test_the_gate_reports_what_it_measured(finished: tuple[Path, MediaProbe, np.ndarray]) -> None:
    path, media, frames = finished
    report = run_qc(media, path, expected_frames=len(frames), fps=FPS, width=1280, height=720,
                    target=WEB, captions=None)
    checks = {c.name: c for c in report.checks}
    assert checks["duration"].expected == "2.000 ± 1 frame"
    assert checks["duration"].measured == f"{media.duration_s:.3f} s"
    assert checks["resolution"].measured == "1280x720"
    assert checks["video_codec"].measured == "h264 High yuv420p"
    assert checks["audio_codec"].measured == "aac 48000 Hz 2 ch"
    assert checks["frame_count"].measured == "48" and checks["frame_count"].expected == "48"
    assert checks["faststart"].measured == "True" and checks["faststart"].expected == "True"
    assert checks["av_offset"].expected == "<= 67 ms"


def test_next_action_retries_until_the_limit() -> None:
    bad = QCReport(checks=[QCCheck(name="x", passed=False, measured="1", expected="2")])
    good = QCReport(checks=[QCCheck(name="x", passed=True, measured="1", expected="1")])
    assert [next_action(bad, attempt, 2) for attempt in range(4)] == \
        ["retry", "retry", "fail", "fail"]
    assert next_action(good, 5, 0) == "accept"
    assert bad.failures == ["x: measured 1, expected 2"] and good.failures == []
    assert StreamInfo(codec="aac", language=None).channels is None

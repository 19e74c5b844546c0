"""The one-pass ffmpeg analysis behind the QC gate, on real encoded files: black and still
stretches, the decoded frame count and the true peak, and the one-run encode of both variants."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from infra.media import MediaAnalysis, MediaError, analyze_media, decode_audio, probe, run_ffmpeg
from schemas.brief import Aspect, LoudnessProfile
from schemas.finishing import LOUDNESS_TARGETS, CaptionCue, FinishSpec
from tasks import photosensitivity, qc
from tasks.finishing import finish_clip, write_wav
from tasks.qc import file_analysis, file_picture_checks
from tests.tasks.test_finishing import FPS, RATE, synthetic_clip


def _encode(frames: np.ndarray, audio: np.ndarray | None, path: Path) -> Path:
    """A plain H.264 (+ PCM-sourced AAC) file from raw frames, without the finishing chain."""
    h, w = frames.shape[1:3]
    args = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(FPS),
            "-i", "pipe:"]
    if audio is not None:
        args += ["-i", str(write_wav(audio, RATE, path.with_suffix(".wav")))]
    args += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "10", str(path)]
    run_ffmpeg(args, stdin=np.ascontiguousarray(frames).tobytes())
    return path


def _true_peak_4x(audio: np.ndarray) -> float:
    """An independent true-peak estimate: 4x band-limited (FFT) upsampling, max |x| in dB."""
    n = audio.shape[-1]
    spectrum = np.fft.rfft(audio, axis=-1)
    up = np.fft.irfft(spectrum, n=4 * n, axis=-1) * 4
    return float(20 * np.log10(np.abs(up).max()))


def test_moving_picture_is_neither_black_nor_still(tmp_path: Path) -> None:
    frames, audio = synthetic_clip(2.0)
    analysis = file_analysis(_encode(frames, audio, tmp_path / "moving.mp4"))
    assert analysis.frames == len(frames) == 48
    assert analysis.video_s == pytest.approx(2.0)
    assert analysis.black_s == 0.0 and analysis.frozen_s == 0.0
    checks = {c.name: c for c in file_picture_checks(analysis, FPS)}
    assert checks["black_picture"].passed and checks["frozen_picture"].passed
    assert checks["black_picture"].measured == "black 0.00 s of 2.00 s"


def test_black_and_still_stretches_are_timed(tmp_path: Path) -> None:
    frames, audio = synthetic_clip(2.0)
    frames[:12] = 0  # first half second black (and so also still): a fade-in, not a fault
    analysis = file_analysis(_encode(frames, audio, tmp_path / "quarter.mp4"))
    assert analysis.black_s == pytest.approx(0.5, abs=1.5 / FPS)
    assert analysis.frozen_s == pytest.approx(0.5, abs=1.5 / FPS)
    checks = {c.name: c.passed for c in file_picture_checks(analysis, FPS)}
    assert checks == {"black_picture": True, "frozen_picture": True, "flashes": True,
                      "one_frame_flash": True, "red_flashes": True, "black_borders": True}


def test_a_render_black_but_for_one_flash_fails(tmp_path: Path) -> None:
    # one white frame in a black render: black and still all but that frame; neither check
    # was "throughout", so the file passed QC
    frames, audio = synthetic_clip(2.0, black=True)
    frames[20] = 255
    analysis = file_analysis(_encode(frames, audio, tmp_path / "flash.mp4"))
    assert {c.name for c in file_picture_checks(analysis, FPS) if not c.passed} == \
        {"black_picture", "frozen_picture", "one_frame_flash"}


def _grey(level: int, frames: int = 48) -> np.ndarray:
    """A moving picture around one grey level: a faint ramp drifting across it."""
    ramp = (np.arange(64)[None, :] + 3 * np.arange(frames)[:, None]) % 16 - 8
    picture = np.clip(level + ramp, 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(picture[:, None, :, None], 36, axis=1), 3, axis=3)


def test_one_white_frame_in_a_moving_picture_is_named(tmp_path: Path) -> None:
    # a glitched frame between two alike passed every check: one flash is within the
    # flash rule, and nothing was black or still
    frames = _grey(90)
    frames[20] = 250
    analysis = file_analysis(_encode(frames, None, tmp_path / "glitch.mp4"))
    checks = {c.name: c for c in file_picture_checks(analysis, FPS)}
    assert [name for name, c in checks.items() if not c.passed] == ["one_frame_flash"]
    assert checks["one_frame_flash"].measured == "frames 20 (0.83 s)"
    assert checks["flashes"].measured == "1 flash in the worst second"


def test_a_strobe_fails_the_flash_rule_and_a_cut_or_a_fade_does_not(tmp_path: Path) -> None:
    strobe = _grey(60)
    strobe[(np.arange(48) // 3) % 2 == 1] += 120  # 4 flashes a second
    cut = _grey(40)
    cut[24:] = _grey(200)[24:]  # dark to bright once
    fade = np.concatenate([_grey(40)[:12], np.stack([_grey(40 + 13 * i, 1)[0] for i in
                                                     range(12)]), _grey(200)[24:]])
    failed = {}
    for name, frames in (("strobe", strobe), ("cut", cut), ("fade", fade)):
        analysis = file_analysis(_encode(frames, None, tmp_path / f"{name}.mp4"))
        failed[name] = [c.name for c in file_picture_checks(analysis, FPS) if not c.passed]
    assert failed == {"strobe": ["flashes"], "cut": [], "fade": []}


def test_a_red_strobe_fails_the_red_flash_rule_where_the_luminance_barely_moves(
        tmp_path: Path) -> None:
    """Saturated red swapping with a grey of about the same luma, 4 times a second: no general
    flash, but the red-flash rule's pairs of transitions to and from a saturated red. A red
    that swaps with an orange (too close in chromaticity) or a pink (no saturated red) 4 times
    a second passes."""
    def strobe(colour: tuple[int, int, int], other: tuple[int, int, int]) -> np.ndarray:
        frames = np.empty((48, 36, 64, 3), dtype=np.int16)
        frames[:] = np.array(colour)
        frames[(np.arange(48) // 3) % 2 == 1] = np.array(other)
        frames += _grey(8).astype(np.int16) - 8  # a drifting ramp: a moving picture
        return np.clip(frames, 0, 255).astype(np.uint8)

    failed = {}
    for name, frames in (("red-grey", strobe((230, 0, 0), (60, 60, 60))),
                         ("red-orange", strobe((230, 0, 0), (230, 60, 0))),
                         ("pink-grey", strobe((230, 150, 150), (170, 170, 170)))):
        analysis = file_analysis(_encode(frames, None, tmp_path / f"{name}.mp4"))
        checks = {c.name: c for c in file_picture_checks(analysis, FPS)}
        failed[name] = [c.name for c in checks.values() if not c.passed]
        if name == "red-grey":
            assert checks["red_flashes"].measured == "4 red flashes in the worst second"
            assert analysis.rgb_cells.shape == (48, 144, 3)
    assert failed == {"red-grey": ["red_flashes"], "red-orange": [], "pink-grey": []}


def test_a_strobe_over_part_of_the_screen_fails_though_the_screens_mean_barely_moves(
        tmp_path: Path) -> None:
    """BT.1702 counts a flash by its area (a quarter of the screen or more); the mean reading
    alone needed a change four times as large over a quarter of the screen."""
    strobe = _grey(60)
    lit = (np.arange(48) // 3) % 2 == 1  # 4 flashes a second
    strobe[lit, :20, :48] += 60  # 60 of the grid's 144 cells, a change of ~0.15 in each
    analysis = file_analysis(_encode(strobe, None, tmp_path / "part.mp4"))
    assert np.ptp(photosensitivity.linear_cells(analysis.luma_cells).mean(axis=1)) < \
        photosensitivity.FLASH_CHANGE  # the mean reading sees no flash at all
    checks = {c.name: c for c in file_picture_checks(analysis, FPS)}
    assert [name for name, c in checks.items() if not c.passed] == ["flashes"]
    assert checks["flashes"].measured == "4 flashes in the worst second"


def test_black_bars_are_named_and_a_dark_edge_or_a_black_background_is_not(tmp_path: Path) -> None:
    # a first frame with bars gives a render that keeps them: it passed every check
    letterboxed = _grey(120)
    letterboxed[:, :4] = letterboxed[:, -4:] = 0  # 4 rows of 36 at the top and the bottom
    pillarboxed = _grey(120)
    pillarboxed[:, :, :6] = pillarboxed[:, :, -6:] = 0  # 6 columns of 64 a side
    dark_top_a_while = _grey(120)
    dark_top_a_while[:30, :10] = 0  # the top in shadow, then lit
    dark_top = _grey(120)
    dark_top[:, :6] = 0  # one dark edge throughout (a night sky): picture, not a bar
    product_on_black = np.zeros_like(letterboxed)
    for index, frame in enumerate(product_on_black):  # a box turning on a black background
        frame[8:28, 20 + index % 6:40 + index % 6] = (220, 60, 30)
    checks = {}
    for name, frames in (("letterboxed", letterboxed), ("pillarboxed", pillarboxed),
                         ("dark_top_a_while", dark_top_a_while), ("dark_top", dark_top),
                         ("product_on_black", product_on_black)):
        analysis = file_analysis(_encode(frames, None, tmp_path / f"{name}.mp4"))
        check = next(c for c in file_picture_checks(analysis, FPS) if c.name == "black_borders")
        checks[name] = (check.passed, check.measured)
    assert checks == {"letterboxed": (False, "top 4 px, bottom 4 px"),
                      "pillarboxed": (False, "left 6 px, right 6 px"),
                      "dark_top_a_while": (True, "none"), "dark_top": (True, "none"),
                      "product_on_black": (True, "none")}


def test_a_render_still_for_its_second_half_fails(tmp_path: Path) -> None:
    frames, audio = synthetic_clip(2.0)
    frames[24:] = frames[24]
    analysis = file_analysis(_encode(frames, audio, tmp_path / "stops.mp4"))
    assert {c.name for c in file_picture_checks(analysis, FPS) if not c.passed} == \
        {"frozen_picture"}


def test_a_picture_black_throughout_fails_and_a_still_one_too(tmp_path: Path) -> None:
    frames, audio = synthetic_clip(2.0, black=True)
    black = file_analysis(_encode(frames, audio, tmp_path / "black.mp4"))
    assert black.black_s == pytest.approx(2.0, abs=1e-6)
    assert {c.name for c in file_picture_checks(black, FPS) if not c.passed} == \
        {"black_picture", "frozen_picture"}
    still = np.repeat(synthetic_clip(2.0)[0][:1], 48, axis=0)  # a bright frame, held
    frozen = file_analysis(_encode(still, audio, tmp_path / "still.mp4"))
    assert frozen.black_s == 0.0 and frozen.frozen_s == pytest.approx(2.0, abs=1e-6)
    assert {c.name for c in file_picture_checks(frozen, FPS) if not c.passed} == \
        {"frozen_picture"}


def test_dark_but_not_black_picture_passes(tmp_path: Path) -> None:
    # luma 20 of 255 is above the 16 threshold: dim, not black
    frames, audio = synthetic_clip(2.0)
    frames = (frames.astype(np.float32) * 0 + 20 + (np.arange(48) % 2)[:, None, None, None] * 8
              ).astype(np.uint8)
    analysis = file_analysis(_encode(frames, audio, tmp_path / "dim.mp4"))
    assert analysis.black_s == 0.0
    assert all(c.passed for c in file_picture_checks(analysis, FPS))


def test_true_peak_matches_an_independent_oversampled_peak(tmp_path: Path) -> None:
    frames, audio = synthetic_clip(2.0)
    path = _encode(frames, audio * 4, tmp_path / "loud.mp4")
    analysis = file_analysis(path)
    decoded, _ = decode_audio(path)
    assert analysis.true_peak_dbtp is not None
    assert analysis.true_peak_dbtp == pytest.approx(_true_peak_4x(decoded), abs=0.3)
    silent = _encode(frames, np.zeros_like(audio), tmp_path / "silent.mp4")
    assert file_analysis(silent).true_peak_dbtp is None  # -inf is reported as no peak


def test_a_file_without_a_picture_fails_the_picture_checks_without_an_error(
        tmp_path: Path) -> None:
    # the frame grids of a file with no video stream were empty arrays that failed to reshape:
    # a ValueError from the QC gate instead of its verdict
    _, audio = synthetic_clip(1.0)
    path = tmp_path / "sound-only.mp4"
    run_ffmpeg(["-i", str(write_wav(audio, RATE, tmp_path / "a.wav")), "-c:a", "aac", str(path)])
    analysis = file_analysis(path)
    assert (analysis.frames, analysis.picture_size) == (0, None)
    assert {c.name: c.passed for c in file_picture_checks(analysis, FPS)} == {
        "black_picture": False, "frozen_picture": True, "flashes": True,
        "one_frame_flash": True, "red_flashes": True, "black_borders": True}


def test_video_only_file_and_unreadable_file(tmp_path: Path) -> None:
    frames, _ = synthetic_clip(1.0)
    analysis = file_analysis(_encode(frames, None, tmp_path / "mute.mp4"))
    assert analysis.frames == 24 and analysis.true_peak_dbtp is None
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a movie")
    with pytest.raises(MediaError, match="not a readable media file"):
        analyze_media(junk, black_luma=0.06, black_share=0.98, freeze_noise=0.002)


def test_both_variants_come_from_one_run_with_their_own_tracks(tmp_path: Path) -> None:
    frames, audio = synthetic_clip(2.0)
    spec = FinishSpec(aspect=Aspect.SQUARE, locale="fr-FR",
                      loudness=LOUDNESS_TARGETS[LoudnessProfile.WEB],
                      captions=[CaptionCue(start_s=0.0, end_s=1.9, lines=["Bonjour"])])
    result = finish_clip(frames, audio, FPS, RATE, spec, tmp_path)
    assert result.qc.passed, result.qc.failures
    assert result.burned_path is not None
    plain, burned = probe(Path(result.video_path)), probe(Path(result.burned_path))
    assert [s.codec for s in plain.subtitles] == ["mov_text"] and burned.subtitles == []
    for media in (plain, burned):
        assert media.video is not None and (media.video.width, media.video.height) == (720, 720)
        assert media.audio is not None and media.audio.language == "fre" and media.faststart
    for path in (result.video_path, result.burned_path):
        with av.open(path) as container:
            assert sum(1 for _ in container.decode(video=0)) == len(frames)
    assert result.true_peak_out_dbtp is not None and result.true_peak_out_dbtp <= -1.0


def _analysis(frames: int, black_s: float = 0.0, frozen_s: float = 0.0) -> MediaAnalysis:
    """Black and still for the last `black_s` and `frozen_s` seconds."""
    video_s = frames / FPS
    return MediaAnalysis(frames=frames, video_s=video_s,
                         black_spans=((video_s - black_s, video_s),) if black_s else (),
                         frozen_spans=((video_s - frozen_s, video_s),) if frozen_s else (),
                         true_peak_dbtp=None)


def _failing(analysis: MediaAnalysis) -> set[str]:
    return {c.name for c in file_picture_checks(analysis, FPS) if not c.passed}


def test_black_or_still_for_half_the_picture_fails_and_just_under_passes() -> None:
    assert _failing(_analysis(48, black_s=1.0, frozen_s=1.0)) == {
        "black_picture", "frozen_picture"}
    under = 1.0 - 1 / FPS
    assert _failing(_analysis(48, black_s=under, frozen_s=under)) == set()


def test_a_held_end_card_is_left_out_of_both_checks() -> None:
    # a 2 s spot ending on a 1.5 s end card on a black brand colour: still and black for 75 %
    card = _analysis(48, black_s=1.5, frozen_s=1.5)
    assert {c.name for c in file_picture_checks(card, FPS, held_s=1.5) if not c.passed} == set()
    # the scenes before it still count: half of them black and still fails
    worse = _analysis(48, black_s=1.75, frozen_s=1.75)
    assert {c.name for c in file_picture_checks(worse, FPS, held_s=1.5) if not c.passed} == {
        "black_picture", "frozen_picture"}


def test_a_dark_scene_before_a_bright_end_card_counts_in_full() -> None:
    # The held span was subtracted from the black total whatever the card's colour: a spot
    # whose 0.5 s of scenes were black for 0.4 s before a white 1.5 s card passed (0.4 - 1.5
    # counted as nothing). Each stretch is now judged by where it lies.
    dark_scene = MediaAnalysis(frames=48, video_s=2.0, black_spans=((0.0, 0.4),),
                               frozen_spans=((0.1, 0.4), (0.5, 2.0)), true_peak_dbtp=None)
    black, frozen, *_ = file_picture_checks(dark_scene, FPS, held_s=1.5)
    assert not black.passed and not frozen.passed
    assert black.measured == "black 0.40 s of 2.00 s (the first 0.50 s judged, 1.50 s held)"
    assert frozen.measured == "still 0.30 s of 2.00 s (the first 0.50 s judged, 1.50 s held)"
    # a black stretch running into the card counts up to the card only
    into_card = MediaAnalysis(frames=48, video_s=2.0, black_spans=((0.3, 2.0),),
                              frozen_spans=(), true_peak_dbtp=None)
    assert {c.name for c in file_picture_checks(into_card, FPS, held_s=1.5)
            if not c.passed} == set()


def test_a_single_frame_is_never_frozen_but_two_identical_frames_are() -> None:
    assert "frozen_picture" not in _failing(_analysis(1, black_s=0.0, frozen_s=0.0))
    assert "frozen_picture" in _failing(_analysis(2, frozen_s=1 / FPS))


def test_picture_checks_say_what_they_expect() -> None:
    black, frozen, *_ = file_picture_checks(_analysis(48, black_s=0.5, frozen_s=0.25), FPS)
    assert black.measured == "black 0.50 s of 2.00 s"
    assert black.expected == "black under 50% of the picture (luma < 16 on 98% of pixels)"
    assert frozen.measured == "still 0.25 s of 2.00 s"
    assert frozen.expected == "still under 50% of the picture (frame difference < 0.5)"


def test_the_analysis_gets_the_thresholds_in_ffmpegs_units(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # blackdetect and freezedetect take fractions of full scale: luma 16 of 255 and half a level
    seen: dict[str, float] = {}

    def recording(path: Path, **thresholds: float) -> MediaAnalysis:
        seen.update(thresholds)
        return analyze_media(path, **thresholds)

    monkeypatch.setattr(qc, "analyze_media", recording)
    frames, audio = synthetic_clip(0.5)
    qc.file_analysis(_encode(frames, audio, tmp_path / "clip.mp4"))
    assert seen["black_luma"] == pytest.approx(0.062745, abs=1e-6)
    assert seen["black_share"] == 0.98
    assert seen["freeze_noise"] == pytest.approx(0.0019608, abs=1e-7)

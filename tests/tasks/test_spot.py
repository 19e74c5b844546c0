"""Spot assembly on real encodes: a two-scene, four-language brief x 16:9 and 9:16, decoded with
PyAV and measured (frames, end card, captions across the whole timeline, loudness, safe zone)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pyloudnorm
import pytest
from PIL import Image

from infra.hashing import sha256_file
from infra.media import decode_audio, decode_video_frames, probe, run_ffmpeg
from schemas.brief import Aspect, Transition, load_brief
from schemas.errors import BriefInvalid
from schemas.finishing import CaptionCue
from schemas.plan import frames_for_duration
from schemas.spot import SpotSpec, plan_spots
from tasks.spot import (
    SPOT_FPS,
    SceneClip,
    assemble_spot,
    build_spot_audio_args,
    build_spot_video_args,
    clip_frames,
    scene_starts,
    spot_manifest,
    spot_text,
)
from tasks.spot_qc import join_problems
from tests.example_brief import example_text
from tests.tasks.encoder_settings import encoded_with
from tests.tasks.spot_fixtures import (
    LOCALES,
    OPEN_TONE_HZ,
    SCENE_S,
    TEST_SIZES,
    end_card_png,
    make_scene_clip,
    scene_clips,
    spot_brief,
)

BRIEF = spot_brief()
SPOTS = plan_spots(BRIEF)
SCENE_FRAMES = round(SCENE_S * SPOT_FPS)  # 48
FADE_FRAMES = 6  # 0.25 s at 24 fps
CARD_FRAMES = 36  # 1.5 s


@pytest.fixture(scope="module")
def clip_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scenes")
    return {"open": make_scene_clip(folder / "open.mp4", tone_hz=OPEN_TONE_HZ),
            "stride": make_scene_clip(folder / "stride.mp4", tone_hz=330.0)}


def test_the_brief_plans_one_spot_per_locale_and_aspect() -> None:
    assert [(s.locale, s.aspect) for s in SPOTS] == [
        (loc, asp) for loc in LOCALES for asp in (Aspect.LANDSCAPE, Aspect.PORTRAIT)]


@pytest.mark.parametrize("spec", SPOTS, ids=[s.spot_id for s in SPOTS])
def test_each_spot_plays_end_to_end_with_end_card_captions_loudness_and_safe_zone(
        tmp_path: Path, clip_paths: dict[str, Path], spec: SpotSpec) -> None:
    card = end_card_png(BRIEF, spec, tmp_path)
    result = assemble_spot(spec, scene_clips(BRIEF, spec.locale, clip_paths), tmp_path,
                           size=TEST_SIZES[spec.aspect], end_card=card)
    expected_frames = 2 * SCENE_FRAMES - FADE_FRAMES + CARD_FRAMES
    assert result.frames == expected_frames
    assert result.scene_starts_s == [0.0, (SCENE_FRAMES - FADE_FRAMES) / SPOT_FPS]
    # 1. playable end to end: every frame and every sample decodes
    frames = decode_video_frames(Path(result.video_path))
    assert frames.shape == (expected_frames, *TEST_SIZES[spec.aspect][::-1], 3)
    samples, rate = decode_audio(Path(result.video_path))
    assert abs(samples.shape[1] / rate - expected_frames / SPOT_FPS) < 0.05
    with av.open(result.video_path) as container:
        assert container.streams.video[0].codec_context.profile == "High"
        # every frame one 24 fps step after the last, end card included (a player, the
        # platforms and the freeze check read time from these)
        times = sorted(float(packet.pts * packet.time_base)
                       for packet in container.demux(container.streams.video[0])
                       if packet.pts is not None)
        assert np.allclose(np.diff(times), 1 / SPOT_FPS, atol=1e-3), np.diff(times)
        assert container.streams.subtitles[0].metadata["language"] == \
            probe(Path(result.video_path)).audio.language  # type: ignore[union-attr]
    # 2. the end card closes the spot
    card_pixels = np.asarray(Image.open(card).convert("RGB"), dtype=np.int16)
    for index in (-CARD_FRAMES + 1, -1):
        assert np.abs(frames[index].astype(np.int16) - card_pixels).mean() < 6
    assert np.abs(frames[SCENE_FRAMES].astype(np.int16) - card_pixels).mean() > 30
    # 3. captions over the whole spot: a cue per scene, the second on the second scene's time
    vtt = Path(result.vtt_path or "").read_text(encoding="utf-8")
    assert vtt.count(" --> ") == 2
    assert "00:00:01.850 --> " in vtt  # scene 2 starts at 42/24 = 1.75 s, its cue 0.1 s in
    burned = decode_video_frames(Path(result.burned_path or ""))
    x0, y0, x1, y1 = spec.safe_zone.box(*TEST_SIZES[spec.aspect])
    for at_s in (0.9, 2.8):  # middle of each scene's cue
        index = round(at_s * SPOT_FPS)
        changed = np.abs(burned[index].astype(np.int16) - frames[index]).max(axis=-1) > 40
        assert changed[y0:y1, x0:x1].sum() > 20, f"no caption at {at_s} s"
        outside = changed.sum() - changed[y0:y1, x0:x1].sum()
        assert outside <= 0.001 * changed.size, f"caption pixels outside the zone at {at_s} s"
    # 4. one loudness over the whole spot, within 1 LU of the platform target
    loudness = pyloudnorm.Meter(rate).integrated_loudness(samples.T)
    assert abs(loudness - spec.loudness.integrated_lufs) <= 1.0
    assert result.true_peak_out_dbtp is not None and result.true_peak_out_dbtp <= -1.0
    # 5. the end card is silent and the crossfade does not click
    assert np.abs(samples[:, -int(0.5 * rate):]).max() < 1e-3
    assert join_problems(samples, rate, result.scene_starts_s[1:]) == []


def test_in_9x16_captions_sit_above_the_reels_bottom_band(
        tmp_path: Path, clip_paths: dict[str, Path]) -> None:
    spec = next(s for s in SPOTS if s.locale == "ar-SA" and s.aspect == Aspect.PORTRAIT)
    assert spec.safe_zone.bottom == 0.35
    result = assemble_spot(spec, scene_clips(BRIEF, spec.locale, clip_paths), tmp_path,
                           size=TEST_SIZES[spec.aspect], end_card=end_card_png(BRIEF, spec,
                                                                              tmp_path))
    plain = decode_video_frames(Path(result.video_path))[21].astype(np.int16)
    burned = decode_video_frames(Path(result.burned_path or ""))[21].astype(np.int16)
    rows = np.flatnonzero((np.abs(burned - plain).max(axis=-1) > 40).any(axis=1))
    height = TEST_SIZES[Aspect.PORTRAIT][1]
    # With only title-safe margins the caption would sit at 90 % of the height.
    assert rows.size and rows.max() < height * 0.65


def test_cut_spots_join_without_a_click_where_a_raw_splice_clicks(
        tmp_path: Path, clip_paths: dict[str, Path]) -> None:
    brief = spot_brief(transition="cut", brand_kit=None, aspects=["16:9"])
    spec = next(s for s in plan_spots(brief) if s.locale == "de-DE")
    result = assemble_spot(spec, scene_clips(brief, "de-DE", clip_paths), tmp_path,
                           size=TEST_SIZES[Aspect.LANDSCAPE], end_card=None)
    assert result.frames == 2 * SCENE_FRAMES and result.end_card_start_s is None
    samples, rate = decode_audio(Path(result.video_path))
    assert join_problems(samples, rate, [SCENE_S]) == []
    # The same two sounds spliced sample to sample, as a plain concat would: a click.
    first, _ = decode_audio(clip_paths["open"])
    second, _ = decode_audio(clip_paths["stride"])
    # The first tone ends at the top of a swing, the second starts at zero.
    spliced = np.concatenate([first[:, :int(SCENE_S * rate)], second], axis=1)
    assert any("click" in p for p in join_problems(spliced, rate, [SCENE_S]))


def test_arguments_join_scenes_by_xfade_and_acrossfade_at_frame_exact_offsets(
        tmp_path: Path) -> None:
    spec = SPOTS[0]
    paths = [tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"]
    spec3 = spec.model_copy(update={"scene_ids": ["a", "b", "c"]})
    args = build_spot_video_args(
        [(p, 48, 128, 72) for p in paths], spec=spec3, size=(320, 180), overlap_frames=6,
        end_card=(tmp_path / "card.png", 36), wav=tmp_path / "s.wav", srt=None,
        overlay=tmp_path / "t.ass", out=tmp_path / "o.mp4", focus=[None] * 3)
    graph = args[args.index("-filter_complex") + 1]
    assert "xfade=duration=0.25:offset=1.75:transition=fade" in graph
    assert "xfade=duration=0.25:offset=3.5:transition=fade" in graph  # 48 + 42 - 6 frames
    assert graph.count("concat=a=0:n=2:v=1") == 1  # the end card, on a cut
    assert args[args.index("-t") + 1] == f"{(3 * 48 - 12 + 36) / 24:.6f}"
    assert args[args.index("-level:v") + 1] == "3.1"
    assert args[args.index("-b:v") + 1] == "5000k"
    audio = build_spot_audio_args(paths, [48, 48, 48], overlap_frames=6, end_card_frames=36,
                                  out=tmp_path / "s.wav")
    audio_graph = audio[audio.index("-filter_complex") + 1]
    assert audio_graph.count("acrossfade=c1=qsin:c2=qsin:d=0.25") == 2
    cut = build_spot_audio_args(paths, [48, 48, 48], overlap_frames=0, end_card_frames=0,
                                out=tmp_path / "s.wav")
    cut_graph = cut[cut.index("-filter_complex") + 1]
    assert "acrossfade" not in cut_graph and cut_graph.count("afade=d=0.005:t=in") == 3


def test_text_moves_onto_the_spot_timeline_and_stops_at_the_next_scene() -> None:
    clips = scene_clips(BRIEF, "en-US", {"open": Path("a"), "stride": Path("b")})
    clips[0] = clips[0].model_copy(update={"captions": [
        clips[0].captions[0].model_copy(update={"end_s": 1.95})]})
    starts = [s / SPOT_FPS for s in scene_starts([48, 48], 6)]
    cues, texts = spot_text(clips, starts, 90 / SPOT_FPS)
    assert [(c.start_s, c.end_s) for c in cues] == [(0.1, 1.75), (1.85, 3.65)]
    assert [(t.start_s, t.end_s) for t in texts] == [(0.0, 1.75)]  # scene 2 has no text
    assert BRIEF.transition == Transition.CROSSFADE


def test_clips_that_do_not_match_the_plan_are_refused(
        tmp_path: Path, clip_paths: dict[str, Path]) -> None:
    spec = SPOTS[0]
    swapped = list(reversed(scene_clips(BRIEF, "en-US", clip_paths)))
    with pytest.raises(Exception, match="do not match the planned scenes"):
        assemble_spot(spec, swapped, tmp_path, size=(320, 180), end_card=tmp_path / "c.png")
    with pytest.raises(Exception, match="end card planned for 1.5 s but none"):
        assemble_spot(spec, scene_clips(BRIEF, "en-US", clip_paths), tmp_path,
                      size=(320, 180), end_card=None)
    silent = SceneClip(scene_id="open", path=str(tmp_path / "missing.mp4"))
    with pytest.raises(Exception, match="not a readable media file"):
        assemble_spot(spec, [silent, scene_clips(BRIEF, "en-US", clip_paths)[1]], tmp_path,
                      size=(320, 180), end_card=tmp_path / "c.png")


def _two_scene_brief_problems(durations: tuple[float, float]) -> list[tuple[str, str]]:
    scenes = [{"scene_id": scene_id, "visual": "a white ball", "duration_s": duration}
              for scene_id, duration in zip(("open", "stride"), durations, strict=True)]
    with pytest.raises(BriefInvalid) as info:
        spot_brief(scenes=scenes)
    return info.value.problems


def test_assembly_refuses_a_crossfade_exactly_when_the_brief_is_refused(
        tmp_path: Path, clip_paths: dict[str, Path]) -> None:
    # Hostile pass #5: a 0.5 s scene renders 13 frames, used as 12; a 0.25 s crossfade is 6
    # frames at each end. The brief must refuse at submission what assembly refuses after renders.
    problems = _two_scene_brief_problems((SCENE_S, 0.5))
    assert [path for path, _ in problems] == ["scenes[1].duration_s"]
    why = problems[0][1]
    assert "needs scenes longer than 12 frames" in why
    short = make_scene_clip(tmp_path / "short.mp4", seconds=frames_for_duration(0.5) / SPOT_FPS)
    spec = SPOTS[0].model_copy(update={"scene_durations_s": [SCENE_S, 0.5]})
    clips = [SceneClip(scene_id="open", path=str(clip_paths["open"])),
             SceneClip(scene_id="stride", path=str(short))]
    with pytest.raises(Exception) as info:
        assemble_spot(spec, clips, tmp_path, size=(320, 180), end_card=tmp_path / "c.png")
    assert str(info.value) == f"spot {spec.spot_id}: scene 'stride': {why}"


def test_the_assembled_spot_lasts_what_the_brief_was_checked_with(tmp_path: Path) -> None:
    # Hostile pass #4: 1.29 s renders 29 frames (the nearest 4k+1), not 31. The brief's length
    # (checked against the platforms at submission) must be what assembly makes of the renders.
    scenes = [{"scene_id": scene_id, "visual": "a white ball", "duration_s": 1.29}
              for scene_id in ("open", "stride")]
    brief = spot_brief(scenes=scenes, locales=["en-US"], aspects=["16:9"],
                       brand_kit={"logo": "logo.png", "colours": ["#101820", "#FEE715"],
                                  "end_card_s": 1.5})
    spec = plan_spots(brief)[0]
    rendered = frames_for_duration(1.29)
    assert rendered == 29
    paths = {scene_id: make_scene_clip(tmp_path / f"{scene_id}.mp4", seconds=rendered / SPOT_FPS)
             for scene_id in ("open", "stride")}
    clips = scene_clips(brief, "en-US", paths)
    result = assemble_spot(spec, clips, tmp_path, size=TEST_SIZES[spec.aspect],
                           end_card=end_card_png(brief, spec, tmp_path))
    assert result.frames == 29 + 29 - 6 + 36
    assert result.duration_s == pytest.approx(brief.spot_duration_s)
    assert spec.duration_s == pytest.approx(brief.spot_duration_s)
    assert probe(Path(result.video_path)).duration_s == pytest.approx(brief.spot_duration_s,
                                                                     abs=0.03)


def test_the_example_brief_gives_four_playable_spots_even_from_a_25_fps_clip(
        tmp_path: Path) -> None:
    example = load_brief(example_text())  # no brand kit: no end card
    spots = plan_spots(example)
    assert [(s.locale, s.aspect.value) for s in spots] == [
        ("en-US", "16:9"), ("en-US", "9:16"), ("de-DE", "16:9"), ("de-DE", "9:16")]
    clip = tmp_path / "morning-run.mp4"
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc2=s=128x72:r=25:d=1.2", "-f", "lavfi", "-i",
                "sine=f=440:sample_rate=44100:d=1.2", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(clip)])
    assert clip_frames(clip) == (29, 128, 72)  # 30 frames at 25 fps: 1.2 s at 24 fps
    spec = spots[3]
    scene = example.scenes[0]
    clips = [SceneClip(
        scene_id=scene.scene_id, path=str(clip), on_screen_text=scene.on_screen_text["de-DE"],
        captions=[CaptionCue(start_s=0.0, end_s=0.9, lines=["Jeder Morgen beginnt"])],
        render_id="render-1", seed=1234)]
    result = assemble_spot(spec, clips, tmp_path, size=TEST_SIZES[spec.aspect], end_card=None)
    frames = decode_video_frames(Path(result.video_path))
    samples, rate = decode_audio(Path(result.video_path))
    # trimmed to the brief's 1.0 s: the spot is as long as the platform check was told
    assert len(frames) == result.frames == 24 and result.scene_starts_s == [0.0]
    assert abs(samples.shape[1] / rate - 1.0) < 0.03
    manifest = spot_manifest(spec, clips, result)
    assert [(s.scene_id, s.frames, s.render_id, s.seed) for s in manifest.scenes] == [
        ("morning-run", 24, "render-1", 1234)]
    assert manifest.scenes[0].clip_sha256 == sha256_file(clip)
    assert manifest.file_names == {
        "youtube": "aurora-spring-launch_de-DE_9x16_youtube.mp4",
        "instagram": "aurora-spring-launch_de-DE_9x16_instagram.mp4"}
    assert manifest.video_sha256 == sha256_file(Path(result.video_path))
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(samples.T) + 14.0) <= 1.0


@pytest.mark.parametrize("preset", ["veryfast", None])
def test_the_spot_is_encoded_at_the_delivery_preset(tmp_path: Path, clip_paths: dict[str, Path],
                                                    preset: str | None) -> None:
    spec = SPOTS[0]
    chosen = {} if preset is None else {"x264_preset": preset}
    result = assemble_spot(spec, scene_clips(BRIEF, spec.locale, clip_paths), tmp_path,
                           size=TEST_SIZES[spec.aspect], end_card=end_card_png(BRIEF, spec,
                                                                               tmp_path),
                           **chosen)  # type: ignore[arg-type]
    for path in (result.video_path, result.burned_path):
        assert encoded_with(Path(path or ""), preset or "superfast"), path


def test_the_burned_caption_variant_comes_from_the_same_run_as_the_master(
        tmp_path: Path) -> None:
    """One ffmpeg run decodes, scales and joins the scenes once and writes both files: the
    master with the soft subtitle track and the variant with captions burned in, without it."""
    paths = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    args = build_spot_video_args(
        [(p, 48, 128, 72) for p in paths], spec=SPOTS[0], size=(320, 180), overlap_frames=6,
        end_card=None, wav=tmp_path / "s.wav", srt=tmp_path / "s.srt",
        overlay=tmp_path / "t.ass", out=tmp_path / "o.mp4", focus=[None] * 2,
        burned=(tmp_path / "burned.ass", tmp_path / "o.burned.mp4"))
    graph = args[args.index("-filter_complex") + 1]
    assert graph.count("split") == 1 and graph.count("xfade") == 1
    assert "t.ass" in graph and "burned.ass" in graph
    master, variant = args.index(str(tmp_path / "o.mp4")), args.index(
        str(tmp_path / "o.burned.mp4"))
    assert "-scodec" in args[:master] and "-scodec" not in args[master:variant]
    assert [a for a in args if a == str(tmp_path / "s.wav")] == [str(tmp_path / "s.wav")]


def test_both_spot_files_are_encoded_on_one_x264_thread_so_a_run_repeats_its_bytes(
        tmp_path: Path) -> None:
    """With the VBV cap, x264's frame threads made the last GOP depend on timing: a loaded
    machine wrote different bytes from the same inputs. Each output runs one x264 thread."""
    args = build_spot_video_args(
        [(tmp_path / "a.mp4", 48, 128, 72)], spec=SPOTS[0], size=(320, 180), overlap_frames=0,
        end_card=None, wav=tmp_path / "s.wav", srt=None, overlay=tmp_path / "t.ass",
        out=tmp_path / "o.mp4", focus=[None],
        burned=(tmp_path / "burned.ass", tmp_path / "o.burned.mp4"))
    master, variant = args.index(str(tmp_path / "o.mp4")), args.index(
        str(tmp_path / "o.burned.mp4"))
    for options in (args[:master], args[master:variant]):
        assert "-maxrate" in options
        assert options[options.index("-threads") + 1] == "1"

"""Platform presets: what each publishing platform of a brief (`Platform`) accepts for a spot.

Per platform: the aspects and spot durations it takes, the part of a 9:16 frame its app UI covers
(captions and on-screen text must stay out of it), the loudness target, the video bitrate and
H.264 level of the deliverable, and the deliverable's file name.

Sources (public platform specs, checked 2026-11):
- TikTok In-Feed ads: 5-60 s; 9:16 recommended, 1:1 and 16:9 accepted; UI covers about the top
  150 px, bottom 440 px and right 150 px of 1080x1920 (TikTok Ads Manager specs as summarised at
  https://adfuseai.com/blog/tiktok-ad-sizes-specs-guide and
  https://services.warroominc.com/en/knowledgebase/tiktok-ad-specs).
- Meta (Instagram and Facebook) Reels: keep the top 14 %, bottom 35 % and 6 % of each side free of
  text and logos (Meta Business Help Center, as quoted at
  https://houseofmarketers.com/guide-to-safe-zones-tiktok-facebook-instagram-stories-reels/ and
  https://adsuploader.com/blog/meta-ads-safe-zones). Feed video runs from 1 s.
- YouTube: H.264 High, closed GOP, AAC-LC 48 kHz, 5 Mbps recommended for 720p at 24-30 fps
  (https://support.google.com/youtube/answer/1722171). Shorts (9:16): the bottom ~25 % carries
  title, channel and subscribe button
  (https://www.youraithumbnailgenerator.com/guides/youtube-shorts-safe-zones-complete-guide).
- Broadcast: EBU R128 -23 LUFS integrated, -1 dBTP maximum true peak; 16:9 HD only.
- Social and web: -14 LUFS integrated, -1 dBTP (the level YouTube, Spotify and TikTok normalise
  playback to; the project's `LoudnessProfile.WEB`).

Choices where the sources are silent or disagree (written down so they can be argued with):
- A platform's minimum is its shortest *accepted* upload, not its shortest ad product. YouTube
  documents no minimum for an upload (the 6 s bumper is one ad format among several) and Meta's
  Reels placement starts at 0 s, so both take the shortest spot the pipeline can measure
  (`MIN_SCENE_SECONDS`, one loudness block): briefs valid before presets existed stay valid.
- Every safe zone is at least the 10 % title-safe margin the overlay already used
  (`tasks.overlay.TITLE_SAFE_MARGIN`), on every side and every aspect; the app-UI margins above
  only apply to 9:16, where the UI is drawn over the picture.
- H.264 level 3.1 for every preset: it is the level of 1280x720 at up to 30 fps, the size the
  pipeline delivers (`schemas.finishing.TARGET_SIZES`); High profile allows 17.5 Mbps there.
- `web` has no platform loudness: it follows the brief's `loudness_profile` (as before).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.brief import MIN_SCENE_SECONDS, Aspect, LoudnessProfile, Platform
from schemas.finishing import LOUDNESS_TARGETS, LoudnessTarget

TITLE_SAFE = 0.10  # the overlay's title-safe margin: the least any text keeps from an edge


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SafeZone(Frozen):
    """Margins, as fractions of the frame, that captions and on-screen text keep clear."""

    top: float = Field(ge=0, lt=0.5)
    bottom: float = Field(ge=0, lt=0.5)
    left: float = Field(ge=0, lt=0.5)
    right: float = Field(ge=0, lt=0.5)

    @model_validator(mode="after")
    def _leaves_room(self) -> SafeZone:
        if self.top + self.bottom >= 0.9 or self.left + self.right >= 0.9:
            raise ValueError(f"safe zone {self} leaves less than 10 % of the frame for text")
        return self

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels of the area text may occupy (x1, y1 exclusive)."""
        return (round(width * self.left), round(height * self.top),
                width - round(width * self.right), height - round(height * self.bottom))


TITLE_SAFE_ZONE = SafeZone(top=TITLE_SAFE, bottom=TITLE_SAFE, left=TITLE_SAFE, right=TITLE_SAFE)


def tightest(zones: Iterable[SafeZone]) -> SafeZone:
    """The zone that is safe on every one of `zones` (largest margin per side), never looser
    than title-safe."""
    zones = [TITLE_SAFE_ZONE, *zones]
    return SafeZone(top=max(z.top for z in zones), bottom=max(z.bottom for z in zones),
                    left=max(z.left for z in zones), right=max(z.right for z in zones))


class PlatformPreset(Frozen):
    platform: Platform
    aspects: tuple[Aspect, ...]
    min_duration_s: float = Field(gt=0)
    max_duration_s: float = Field(gt=0)
    portrait_safe_zone: SafeZone  # where text may go in 9:16, where the app UI covers the frame
    loudness: LoudnessTarget | None  # None: follow the brief's loudness_profile
    video_bitrate_kbps: int = Field(gt=0)
    h264_level: str


def _px(top: int, bottom: int, left: int, right: int) -> SafeZone:
    """A 9:16 safe zone from pixel margins on 1080x1920, the size the platforms publish."""
    return tightest([SafeZone(top=top / 1920, bottom=bottom / 1920, left=left / 1080,
                              right=right / 1080)])


_SOCIAL = LoudnessTarget(integrated_lufs=-14.0, true_peak_dbtp=-1.0)
_EBU_R128 = LoudnessTarget(integrated_lufs=-23.0, true_peak_dbtp=-1.0)
_META_REELS = tightest([SafeZone(top=0.14, bottom=0.35, left=0.06, right=0.06)])
_ALL_ASPECTS = (Aspect.LANDSCAPE, Aspect.PORTRAIT, Aspect.SQUARE)

PLATFORM_PRESETS: dict[Platform, PlatformPreset] = {
    Platform.YOUTUBE: PlatformPreset(
        platform=Platform.YOUTUBE, aspects=_ALL_ASPECTS, min_duration_s=MIN_SCENE_SECONDS,
        max_duration_s=15 * 60.0,  # the upload limit of an unverified channel
        portrait_safe_zone=_px(top=192, bottom=480, left=108, right=108),
        loudness=_SOCIAL, video_bitrate_kbps=5000, h264_level="3.1"),
    Platform.TIKTOK: PlatformPreset(
        platform=Platform.TIKTOK, aspects=_ALL_ASPECTS, min_duration_s=5.0, max_duration_s=60.0,
        portrait_safe_zone=_px(top=150, bottom=440, left=108, right=150),
        loudness=_SOCIAL, video_bitrate_kbps=5000, h264_level="3.1"),
    Platform.INSTAGRAM: PlatformPreset(
        platform=Platform.INSTAGRAM, aspects=_ALL_ASPECTS, min_duration_s=MIN_SCENE_SECONDS,
        max_duration_s=90.0,  # a Reel every account can post
        portrait_safe_zone=_META_REELS, loudness=_SOCIAL, video_bitrate_kbps=5000,
        h264_level="3.1"),
    Platform.FACEBOOK: PlatformPreset(
        platform=Platform.FACEBOOK, aspects=_ALL_ASPECTS, min_duration_s=1.0,
        max_duration_s=241 * 60.0,  # Meta feed video: 1 s to 241 min
        portrait_safe_zone=_META_REELS, loudness=_SOCIAL, video_bitrate_kbps=5000,
        h264_level="3.1"),
    Platform.WEB: PlatformPreset(
        platform=Platform.WEB, aspects=_ALL_ASPECTS, min_duration_s=MIN_SCENE_SECONDS,
        max_duration_s=60 * 60.0,  # our own player: no platform limit, one hour as a sanity cap
        portrait_safe_zone=TITLE_SAFE_ZONE, loudness=None, video_bitrate_kbps=5000,
        h264_level="3.1"),
    Platform.BROADCAST: PlatformPreset(
        platform=Platform.BROADCAST, aspects=(Aspect.LANDSCAPE,),
        # Commercial breaks sell 5 s idents up to 120 s spots; longer is programming.
        min_duration_s=5.0, max_duration_s=120.0,
        portrait_safe_zone=TITLE_SAFE_ZONE, loudness=_EBU_R128,
        # A high-rate mezzanine for the broadcaster's own encode: the most level 3.1 High allows.
        video_bitrate_kbps=15000, h264_level="3.1"),
}


def loudness_target(platform: Platform, profile: LoudnessProfile) -> LoudnessTarget:
    """The loudness a spot for `platform` is normalised to (web follows the brief's profile)."""
    return PLATFORM_PRESETS[platform].loudness or LOUDNESS_TARGETS[profile]


def safe_zone(platforms: Iterable[Platform], aspect: Aspect) -> SafeZone:
    """Where text may go in a spot published to all of `platforms` at `aspect`."""
    if aspect != Aspect.PORTRAIT:
        return TITLE_SAFE_ZONE
    return tightest(PLATFORM_PRESETS[p].portrait_safe_zone for p in platforms)


def deliverable_name(campaign: str, locale: str, aspect: Aspect, platform: Platform) -> str:
    """`<campaign>_<locale>_<aspect with x for :>_<platform>.mp4`, e.g.
    `aurora-spring-launch_de-DE_9x16_tiktok.mp4`: sortable, no characters a file system or a
    platform's upload form objects to."""
    return f"{campaign}_{locale}_{aspect.value.replace(':', 'x')}_{platform.value}.mp4"


def duration_problem(platform: Platform, duration_s: float) -> str | None:
    """Why a spot of `duration_s` cannot go to `platform`, or None when it fits."""
    preset = PLATFORM_PRESETS[platform]
    if preset.min_duration_s <= duration_s + 1e-9 and duration_s <= preset.max_duration_s + 1e-9:
        return None
    return (f"{platform.value} takes spots of {preset.min_duration_s:g}-"
            f"{preset.max_duration_s:g} s; this spot lasts {duration_s:.2f} s")


def aspect_problem(platform: Platform, aspect: Aspect) -> str | None:
    """Why `platform` cannot take `aspect`, or None."""
    allowed = PLATFORM_PRESETS[platform].aspects
    if aspect in allowed:
        return None
    return (f"{platform.value} does not take {aspect.value} spots (allowed: "
            f"{', '.join(a.value for a in allowed)})")

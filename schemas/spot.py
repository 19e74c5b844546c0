"""The spot plan: which finished spots a brief yields, and in which order its scenes render.

A spot is the deliverable a team uploads: every scene of the brief in order, joined by cuts or
crossfades, then the brand end card, at one loudness, for one locale and one aspect. When the
brief's platforms want different loudness targets (broadcast -23 LUFS next to social -14), one
spot is planned per target, each listing the platforms it serves.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.brief import Aspect, Brief, Platform, Transition
from schemas.finishing import LoudnessTarget
from schemas.platforms import (
    PLATFORM_PRESETS,
    SafeZone,
    deliverable_name,
    loudness_target,
    safe_zone,
)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpotSpec(Frozen):
    """One spot: what assembly, finishing and QC need to know, and nothing rendered yet."""

    spot_id: str  # "<locale>/<aspect W>x<H>/<integrated LUFS>", unique within a brief
    campaign: str
    locale: str
    aspect: Aspect
    scene_ids: list[str] = Field(min_length=1)  # in the order they play
    scene_durations_s: list[float]  # as planned in the brief; assembly uses the rendered ones
    transition: Transition
    crossfade_s: float  # only used when transition is crossfade
    end_card_s: float  # 0: no end card
    platforms: list[Platform] = Field(min_length=1)
    loudness: LoudnessTarget
    safe_zone: SafeZone
    video_bitrate_kbps: int
    h264_level: str
    file_names: dict[Platform, str]  # the deliverable's name on each platform
    duration_s: float  # as assembled: schemas.spot_timing (whole-frame renders, crossfades, card)


def plan_spots(brief: Brief) -> list[SpotSpec]:
    """One spot per locale x aspect (x loudness target when platforms disagree), stable order:
    locales and aspects as the brief lists them, louder target first."""
    spots = []
    for locale in brief.locales:
        for aspect in brief.aspects:
            groups: dict[LoudnessTarget, list[Platform]] = {}
            for platform in brief.platforms:
                target = loudness_target(platform, brief.loudness_profile)
                groups.setdefault(target, []).append(platform)
            for target, platforms in sorted(groups.items(),
                                            key=lambda item: -item[0].integrated_lufs):
                presets = [PLATFORM_PRESETS[p] for p in platforms]
                spots.append(SpotSpec(
                    spot_id=f"{locale}/{aspect.value.replace(':', 'x')}/"
                            f"{target.integrated_lufs:g}LUFS",
                    campaign=brief.campaign, locale=locale, aspect=aspect,
                    scene_ids=[s.scene_id for s in brief.scenes],
                    scene_durations_s=[s.duration_s for s in brief.scenes],
                    transition=brief.transition, crossfade_s=brief.crossfade_s,
                    end_card_s=brief.end_card_s, platforms=platforms, loudness=target,
                    safe_zone=safe_zone(platforms, aspect),
                    # The most conservative of the platforms: a file every one of them takes.
                    video_bitrate_kbps=min(p.video_bitrate_kbps for p in presets),
                    h264_level=min((p.h264_level for p in presets), key=float),
                    file_names={p: deliverable_name(brief.campaign, locale, aspect, p)
                                for p in platforms},
                    duration_s=brief.spot_duration_s))
    return spots


def render_order(brief: Brief) -> list[str]:
    """Scene ids so that every scene comes after the scene it continues from; otherwise in brief
    order (a stable topological sort). The brief's validation has ruled out loops."""
    parent = {s.scene_id: s.continue_from for s in brief.scenes}
    order: list[str] = []
    placed: set[str] = set()
    for scene in brief.scenes:
        chain: list[str] = []
        current: str | None = scene.scene_id
        while current is not None and current not in placed:
            chain.append(current)
            current = parent[current]
        for scene_id in reversed(chain):  # the ancestor first
            order.append(scene_id)
            placed.add(scene_id)
    return order


def scenes_to_rerender(brief: Brief, scene_id: str) -> list[str]:
    """`scene_id` and every scene chained after it (directly or through others), in render
    order: their first frame is the changed scene's last. Nothing else."""
    if scene_id not in {s.scene_id for s in brief.scenes}:
        raise KeyError(f"{scene_id!r} is not a scene of brief {brief.campaign!r}")
    affected = {scene_id}
    for current in render_order(brief):  # parents come first, so one pass sees whole chains
        parent = next(s.continue_from for s in brief.scenes if s.scene_id == current)
        if parent in affected:
            affected.add(current)
    return [s for s in render_order(brief) if s in affected]


def spots_to_reassemble(spots: list[SpotSpec], scene_ids: list[str],
                        locale: str | None = None) -> list[SpotSpec]:
    """The spots that contain any of `scene_ids`; only `locale`'s when the retake was made in one
    language (a lipsync retake), every language's when the picture changed for all."""
    wanted = set(scene_ids)
    return [spot for spot in spots if wanted & set(spot.scene_ids)
            and (locale is None or spot.locale == locale)]

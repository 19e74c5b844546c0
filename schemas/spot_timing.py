"""A spot's timeline in whole frames: the one arithmetic for how long a spot really is.

Submission (`Brief._spot_problems`: platform limits, crossfade lengths) predicts it from the
brief; assembly (`tasks.spot.assemble_measured_spot`) computes it from the rendered clips. Both
call `spot_timing`, so the brief refuses exactly what assembly would refuse, and the length the
platforms are checked against at submission is the length the spot will have.

Each scene renders the nearest 4k+1 frames (`frames_for_duration`: up to 2 frames short of or
over its duration) and the spot uses at most its planned frames; each crossfade overlaps whole
frames (`round(crossfade_s * SPOT_FPS)`); the end card follows on a cut for
`round(end_card_s * SPOT_FPS)` frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from schemas.brief import Brief, Transition
from schemas.plan import VIDEO_FPS, frames_for_duration

SPOT_FPS = int(VIDEO_FPS)  # the model renders at 24 fps (MAX_CLIP_SECONDS = 193 / 24)


def scene_frames_used(duration_s: float, rendered_frames: int | None = None) -> int:
    """Frames of a scene the spot uses: its render (`frames_for_duration` until it is rendered),
    trimmed to the planned length so a render over the duration does not lengthen the spot."""
    rendered = frames_for_duration(duration_s) if rendered_frames is None else rendered_frames
    return min(rendered, round(duration_s * SPOT_FPS))


def crossfade_frames(transition: Transition, crossfade_s: float, scene_count: int) -> int:
    """Frames each crossfade overlaps (0 for cuts, and for one scene: nothing to dissolve into):
    whole frames, so picture and sound agree."""
    if transition != Transition.CROSSFADE or scene_count < 2:
        return 0
    return round(crossfade_s * SPOT_FPS)


def scene_starts(frames: Sequence[int], overlap_frames: int) -> list[int]:
    """First frame of each scene on the spot timeline."""
    starts, cursor = [], 0
    for count in frames:
        starts.append(cursor)
        cursor += count - overlap_frames
    return starts


@dataclass(frozen=True)
class SpotTiming:
    scene_frames: tuple[int, ...]  # frames used from each scene, in play order
    overlap_frames: int  # of each crossfade; 0: cuts
    end_card_frames: int  # 0: no end card

    @property
    def scene_starts(self) -> list[int]:
        return scene_starts(self.scene_frames, self.overlap_frames)

    @property
    def content_frames(self) -> int:
        """The scenes, joined: where the end card starts."""
        return self.scene_starts[-1] + self.scene_frames[-1]

    @property
    def total_frames(self) -> int:
        return self.content_frames + self.end_card_frames

    @property
    def duration_s(self) -> float:
        return self.total_frames / SPOT_FPS

    def crossfade_problems(self) -> list[tuple[int, str]]:
        """(scene index, why) for each scene too short for a crossfade at each end, which would
        leave none of it undissolved."""
        if not self.overlap_frames:
            return []
        limit = 2 * self.overlap_frames
        return [(index, f"a {self.overlap_frames}-frame crossfade "
                        f"({self.overlap_frames / SPOT_FPS:.3f} s) at each end needs scenes longer "
                        f"than {limit} frames ({limit / SPOT_FPS:.3f} s); this scene gives "
                        f"{count} frames ({count / SPOT_FPS:.3f} s)")
                for index, count in enumerate(self.scene_frames) if count <= limit]


def spot_timing(scene_durations_s: Sequence[float], *, transition: Transition,
                crossfade_s: float, end_card_s: float,
                rendered_frames: Sequence[int] | None = None) -> SpotTiming:
    """The spot's timeline: predicted from the planned durations, or from the rendered clips'
    frame counts (`rendered_frames`, one per scene) once they exist."""
    rendered: Sequence[int | None] = (
        [None] * len(scene_durations_s) if rendered_frames is None else rendered_frames)
    frames = tuple(scene_frames_used(duration, count)
                   for duration, count in zip(scene_durations_s, rendered, strict=True))
    return SpotTiming(scene_frames=frames,
                      overlap_frames=crossfade_frames(transition, crossfade_s, len(frames)),
                      end_card_frames=round(end_card_s * SPOT_FPS))


def brief_spot_timing(brief: Brief) -> SpotTiming:
    """What every spot of `brief` will be, before anything renders."""
    return spot_timing([s.duration_s for s in brief.scenes], transition=brief.transition,
                       crossfade_s=brief.crossfade_s, end_card_s=brief.end_card_s)

"""Finishing contracts: what a deliverable must be, and what finishing measured."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.brief import Aspect, LoudnessProfile, OnScreenText

# Delivery sizes (width, height) per aspect: 720p class.
TARGET_SIZES: dict[Aspect, tuple[int, int]] = {
    Aspect.LANDSCAPE: (1280, 720),
    Aspect.PORTRAIT: (720, 1280),
    Aspect.SQUARE: (720, 720),
}

# x264's speed presets, fastest first.
X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                     "slower", "veryslow", "placebo"]
# The preset of delivered pictures (spots, published scene cut-downs): FINISH_X264_PRESET.
# Measured against the lossless picture of a spot at its delivery bitrate (bench/README.md):
# superfast is 0.5-0.6 dB PSNR below veryfast (44.5 vs 45.2 dB on the random model's noise, 56.7
# vs 57.2 dB on the demo model's cartoons; bench/x264_presets.py) for 34-42 % less encoding
# CPU, which on a CPU-only machine is most of a campaign's finishing. A GPU cluster, where
# renders dominate, can afford a slower preset.
DELIVERY_X264_PRESET: X264Preset = "superfast"


def x264_key_entry(preset: X264Preset) -> dict[str, str]:
    """The preset's entry in the key of a delivered file. Before the preset was a setting every
    delivered file was `veryfast`, so for it there is no entry: those keys, and the files
    made under them, stay valid."""
    return {} if preset == "veryfast" else {"x264_preset": preset}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LoudnessTarget(Frozen):
    integrated_lufs: float
    true_peak_dbtp: float = -1.0
    loudness_range_lu: float = 11.0


LOUDNESS_TARGETS = {
    LoudnessProfile.WEB: LoudnessTarget(integrated_lufs=-14.0),
    LoudnessProfile.BROADCAST: LoudnessTarget(integrated_lufs=-23.0),
}


class CaptionCue(Frozen):
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    lines: list[str] = Field(min_length=1, max_length=2)


class FinishSpec(Frozen):
    aspect: Aspect
    locale: str
    loudness: LoudnessTarget
    captions: list[CaptionCue] = Field(default_factory=list)
    on_screen_text: OnScreenText | None = None
    focus: tuple[float, float] | None = None
    # The variant with captions burned in, encoded beside the soft-caption master. A scene
    # finish that only feeds its spot skips it: the spot burns captions on its own timeline.
    burned_variant: bool = True
    # A scene finish that only feeds its spots (the brief publishes no cut-downs): cropped to
    # the aspect at the render's own size, not scaled, and encoded losslessly (H.264 4:4:4,
    # qp 0). The spot then scales each render once and encodes it once, instead of finishing
    # encoding 720p that the spot decodes, scales again and encodes a second time.
    intermediate: bool = False

    @model_validator(mode="after")
    def _intermediate_carries_no_text(self) -> FinishSpec:
        if self.intermediate and (self.burned_variant or self.on_screen_text is not None):
            raise ValueError("an intermediate scene finish has no burned-in variant and no "
                             "on-screen text (its spot draws both)")
        return self


class QCCheck(Frozen):
    name: str
    passed: bool
    measured: str
    expected: str


class QCReport(Frozen):
    checks: list[QCCheck]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[str]:
        return [f"{c.name}: measured {c.measured}, expected {c.expected}"
                for c in self.checks if not c.passed]


class FinishResult(Frozen):
    video_path: str  # on-screen text burned in, captions as a soft track
    burned_path: str | None  # the same with captions burned in
    srt_path: str | None
    vtt_path: str | None
    width: int
    height: int
    preview: bool  # upscaled from a smaller render: label it, don't ship it as final
    loudness_in_lufs: float | None
    loudness_out_lufs: float | None
    true_peak_out_dbtp: float | None
    qc: QCReport

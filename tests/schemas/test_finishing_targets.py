"""The delivery targets as the standards state them, written out as literals: the web
profile is -14 LUFS integrated (the level streaming platforms normalise to), broadcast is EBU
R128's -23 LUFS, and both keep true peaks at or below -1 dBTP."""

from __future__ import annotations

import pytest

from schemas.brief import LoudnessProfile
from schemas.finishing import LOUDNESS_TARGETS, TARGET_SIZES


@pytest.mark.parametrize(("profile", "lufs"), [("web", -14.0), ("broadcast", -23.0)])
def test_loudness_targets_are_the_published_ones(profile: str, lufs: float) -> None:
    target = LOUDNESS_TARGETS[LoudnessProfile(profile)]
    assert target.integrated_lufs == lufs
    assert target.true_peak_dbtp == -1.0


def test_every_profile_has_a_target() -> None:
    assert {str(p) for p in LOUDNESS_TARGETS} == {"web", "broadcast"} == \
        {str(p) for p in LoudnessProfile}


def test_delivery_sizes_are_720p_class() -> None:
    assert {str(a): size for a, size in TARGET_SIZES.items()} == {
        "16:9": (1280, 720), "9:16": (720, 1280), "1:1": (720, 720)}

"""Latent-length formulas against spec §6.3 / §12.2."""

from __future__ import annotations

import pytest

from mova_model import lengths
from mova_model.errors import InvalidRequest


@pytest.mark.parametrize(("height", "width", "latent", "tokens"), [
    (352, 640, (16, 49, 44, 80), 43_120),
    (720, 1280, (16, 49, 90, 160), 176_400),
])
def test_release_sizes_at_193_frames(height: int, width: int, latent: tuple[int, ...],
                                     tokens: int) -> None:
    assert lengths.video_latent_shape(height, width, 193) == latent
    assert lengths.video_tokens(height, width, 193) == tokens
    assert lengths.audio_samples(193, 24.0) == 386_000
    assert lengths.audio_latent_frames(193, 24.0) == 403
    assert lengths.decoded_audio_samples(193, 24.0) == 386_880


def test_small_case_and_tiny_demo_size() -> None:
    assert lengths.video_latent_shape(32, 32, 5) == (16, 2, 4, 4)
    assert lengths.video_tokens(32, 32, 5) == 2 * 2 * 2
    assert lengths.audio_samples(5, 24.0) == 10_000
    assert lengths.audio_latent_frames(5, 24.0) == 11
    assert lengths.audio_latent_frames(25, 24.0) == 53


@pytest.mark.parametrize(("size", "message"), [
    ((360, 640, 193), "height=360 and width=640 must be multiples of 16"),
    ((352, 630, 193), "multiples of 16"),
    ((352, 640, 192), "num_frames=192 must be 4k+1 (e.g. 189, 193"),
    ((0, 640, 193), "must all be positive"),
])
def test_impossible_sizes_are_rejected_in_one_line(size: tuple[int, int, int],
                                                   message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        lengths.validate_video_size(*size)
    assert message in str(info.value) and "\n" not in str(info.value)

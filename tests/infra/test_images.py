"""Uploaded images: what a careless or hostile team might send is refused with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from infra.images import (
    ImageRejected,
    bars,
    decode_picture,
    fill_profiles,
    translucent_share,
    verify_image,
)


def _encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 40, 90)).save(buffer, format=fmt)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A real small PNG whose header claims another size (CRC fixed): a decompression bomb's
    signature without its gigabytes."""
    data = bytearray(_encoded("PNG", (8, 8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr:ihdr + 17]))
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_real_images_pass_with_their_size(fmt: str) -> None:
    info = verify_image(_encoded(fmt))
    assert (info.format, info.width, info.height) == (fmt, 64, 48)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"),
    (b"hello, I am a text file named first.png\n", "not an image"),
    (_encoded("GIF"), "GIF images are not accepted"),
    (_png_claiming(20_000, 20_000), "pixels"),
    (_encoded("PNG", (300, 300))[:200], "damaged or truncated"),
])
def test_bad_uploads_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as info:
        verify_image(data)
    assert reason in str(info.value)


def test_pixel_and_byte_limits_come_from_the_caller() -> None:
    data = _encoded("PNG", (100, 100))
    assert verify_image(data, max_pixels=10_000).width == 100
    with pytest.raises(ImageRejected, match="10,000 pixels; the limit is 9,999"):
        verify_image(data, max_pixels=9_999)
    with pytest.raises(ImageRejected, match="the limit is 10"):
        verify_image(data, max_bytes=10)


def _saved(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_a_phone_photo_is_turned_upright_by_its_exif_orientation() -> None:
    """A phone stores a portrait photo as landscape pixels plus an EXIF tag: read without the
    tag, the scene started from a picture lying on its side."""
    stored = Image.new("RGB", (48, 32), (0, 0, 0))
    stored.paste((255, 255, 255), (0, 0, 8, 32))  # a white band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    picture = np.asarray(decode_picture(_saved(stored, "JPEG", exif=exif, quality=95)))
    assert picture.shape == (48, 32, 3)  # upright: portrait
    assert picture[:8].mean() > 200 and picture[16:].mean() < 30  # the band is now on top


def test_sixteen_bit_greyscale_is_scaled_not_clipped_to_white() -> None:
    grey = Image.fromarray(np.full((32, 48), 30000, dtype=np.uint16))
    picture = np.asarray(decode_picture(_saved(grey)))
    assert picture.shape == (32, 48, 3) and np.all(picture == round(30000 * 255 / 65535))


def _srgb_with_red_and_green_swapped() -> bytes:
    """An RGB ICC profile whose red primary is sRGB's green and the reverse: the sRGB profile
    with the offsets of its rXYZ and gXYZ tags exchanged."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", profile[128:132])[0]
    entries = {bytes(profile[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, green = entries[b"rXYZ"], entries[b"gXYZ"]
    profile[red + 4:red + 12], profile[green + 4:green + 12] = \
        profile[green + 4:green + 12], profile[red + 4:red + 12]
    return bytes(profile)


def test_colours_are_converted_from_an_embedded_profile_to_srgb() -> None:
    """The pixels mean what the profile says (a wide-gamut phone photo, a press CMYK file): read
    as plain sRGB, the colours shifted."""
    red_in_profile = _saved(Image.new("RGB", (8, 8), (255, 0, 0)),
                            icc_profile=_srgb_with_red_and_green_swapped())
    r, g, b = decode_picture(red_in_profile).getpixel((4, 4))
    assert g > 200 and r < 60 and b < 60  # that profile's "red" is green
    # an sRGB profile, or one that cannot be read, leaves the pixels as they are
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for profile in (srgb, b"not a profile"):
        plain = _saved(Image.new("RGB", (8, 8), (200, 100, 50)), icc_profile=profile)
        assert decode_picture(plain).getpixel((4, 4)) == (200, 100, 50)


@pytest.mark.parametrize(("image", "options", "share"), [
    (Image.new("RGBA", (10, 10), (255, 0, 0, 0)), {}, 1.0),
    (Image.new("LA", (10, 10), (90, 128)), {}, 1.0),
    (Image.new("P", (10, 10), 0), {"transparency": 0}, 1.0),
    (Image.new("RGBA", (10, 10), (255, 0, 0, 255)), {}, 0.0),
    (Image.new("RGB", (10, 10), (255, 0, 0)), {}, 0.0),
])
def test_transparency_is_measured_in_every_mode_that_carries_it(
        image: Image.Image, options: dict[str, object], share: float) -> None:
    picture = decode_picture(_saved(image, **options), keep_alpha=True)
    assert translucent_share(picture) == share
    assert decode_picture(_saved(image, **options)).mode == "RGB"


def _bars_of(pixels: np.ndarray) -> list[str]:
    image = Image.fromarray(pixels)
    return bars(*fill_profiles(image, 160, 90), image.size)


def test_bars_are_two_opposite_empty_bands_meeting_the_picture_along_an_edge() -> None:
    picture = np.random.default_rng(0).integers(40, 220, (720, 1280, 3), dtype=np.uint8)
    letterboxed, pillarboxed, one_edge = picture.copy(), picture.copy(), picture.copy()
    letterboxed[:88] = letterboxed[-88:] = 0  # a 2.39:1 film in a 16:9 frame
    pillarboxed[:, :160] = pillarboxed[:, -160:] = 5  # near-black: 4:3 in 16:9
    one_edge[:100] = 0  # a night sky: one dark edge is picture
    product = np.zeros_like(picture)
    product[200:520, 400:880] = 200  # a product on black: its edge is not the frame's width
    thin = picture.copy()
    thin[:8] = thin[-8:] = 0  # 8 rows of 720: under 2 %
    assert _bars_of(letterboxed) == ["top 88 px, bottom 88 px"]
    assert _bars_of(pillarboxed) == ["left 160 px, right 160 px"]
    assert [_bars_of(p) for p in (picture, one_edge, product, thin, np.zeros_like(picture))] \
        == [[]] * 5

"""Uploaded images: what a careless or hostile team might send is refused with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from infra.images import ImageRejected, verify_image


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

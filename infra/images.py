"""Uploaded images checked before anything trusts them: format, size in bytes, size in pixels.

A first frame arrives from a team's browser or an S3 prefix; a text file named `.png`, a
truncated file or a 20000x20000 PNG (a decompression bomb: a few KB that decode to gigabytes)
must be refused at submission with a reason, not fail later on a render worker.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from schemas.errors import PipelineError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
# The suffix a stored upload gets from its content (the client's file name may say otherwise).
IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
DEFAULT_MAX_PIXELS = 40_000_000  # an 8K photo (33 MP) fits; renders are at most 0.9 MP
DEFAULT_MAX_BYTES = 20 * 2**20


class ImageRejected(PipelineError, ValueError):
    """The bytes are not an image this pipeline accepts; the message says why, for the team."""


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def limit_decoded_pixels(max_pixels: int) -> None:
    """Lower PIL's own decompression-bomb guard to our limit for this process (service and
    render workers call it once at start-up), as a second line behind `verify_image`."""
    Image.MAX_IMAGE_PIXELS = max_pixels


def verify_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> ImageInfo:
    """Format, dimensions and integrity of an uploaded image, or ImageRejected. The pixel
    count is read from the header before any decoding, so a bomb is refused unread."""
    if not data:
        raise ImageRejected("the file is empty")
    if len(data) > max_bytes:
        raise ImageRejected(f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                info = ImageInfo(format=str(image.format), width=image.width,
                                 height=image.height)
                if info.format not in ALLOWED_FORMATS:
                    raise ImageRejected(f"{info.format} images are not accepted; use "
                                        f"{', '.join(ALLOWED_FORMATS)}")
                if info.width * info.height > max_pixels:
                    raise ImageRejected(f"{info.width}x{info.height} is "
                                        f"{info.width * info.height:,} pixels; the limit is "
                                        f"{max_pixels:,}")
                image.verify()  # structure and checksums, without keeping pixels
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # verify() misses truncated pixel data; decoding finds it
    except ImageRejected:
        raise
    except UnidentifiedImageError as err:
        raise ImageRejected(f"not an image ({', '.join(ALLOWED_FORMATS)} expected)") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageRejected(f"too many pixels to decode safely (limit {max_pixels:,})") from err
    except (OSError, SyntaxError, ValueError) as err:  # PIL's errors for corrupt files
        raise ImageRejected(f"the image is damaged or truncated ({type(err).__name__})") from err
    if info.width < 1 or info.height < 1:
        raise ImageRejected(f"the image is {info.width}x{info.height}")
    return info

"""Uploaded images checked before anything trusts them: format, size in bytes, size in pixels.

A first frame arrives from a team's browser or an S3 prefix; a text file named `.png`, a
truncated file or a 20000x20000 PNG (a decompression bomb: a few KB that decode to gigabytes)
must be refused at submission with a reason, not fail later on a render worker.
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from schemas.errors import PipelineError

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")
# The suffix a stored upload gets from its content (the client's file name may say otherwise).
IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
DEFAULT_MAX_PIXELS = 40_000_000  # an 8K photo (33 MP) fits; renders are at most 0.9 MP
DEFAULT_MAX_BYTES = 20 * 2**20
# PNG's 16-bit greyscale opens in these modes; a plain convert() clips every sample above
# 255, so a mid-grey picture became white.
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")

log = logging.getLogger(__name__)


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


def decode_picture(data: bytes, *, keep_alpha: bool = False) -> Image.Image:
    """The picture as a viewer shows it, in 8-bit sRGB: turned upright by its EXIF orientation
    (a phone photo stores its pixels sideways), 16-bit greyscale scaled rather than clipped,
    colours converted from an embedded ICC profile (Display P3, a CMYK press profile). RGB, or
    RGBA with `keep_alpha`. Call `verify_image` first: this decodes."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened)
    if image.mode in SIXTEEN_BIT_MODES:
        samples = np.asarray(image, dtype=np.uint32)
        image = Image.fromarray((samples * 255 + 32767) // 65535).convert("L")
    mode = "RGBA" if keep_alpha and _has_alpha(image) else "RGB"
    profile = image.info.get("icc_profile")
    if profile and image.mode in ("RGB", "RGBA", "CMYK", "L"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            rgb_mode = "RGBA" if image.mode == "RGBA" else "RGB"
            converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"),
                                                  outputMode=rgb_mode)
            if converted is not None:
                image = converted
        except (ImageCms.PyCMSError, OSError, ValueError) as err:
            # as most viewers do: a profile that cannot be read is ignored
            log.warning("image.icc_ignored error=%s", err)
    return image.convert(mode)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def translucent_share(image: Image.Image) -> float:
    """Share of the picture's pixels that are not fully opaque (0 for a picture without
    alpha)."""
    if image.mode != "RGBA":
        return 0.0
    alpha = np.asarray(image.getchannel("A"))
    return float((alpha < 255).mean())


# Letterboxing and pillarboxing: two opposite edge bands, each this share of the side or more,
# empty in every frame, each meeting the picture along a straight edge. A black background
# around a product is not a bar: the picture's first row beside it is mostly dark too.
BAR_SHARE = 0.02
BAR_EMPTY = 0.02  # a band's cells: at most this share of pixels above near-black, every frame
BAR_EDGE_FULL = 0.9  # the picture's row or column beside a bar: at least this share, typically
# Near-black in full-range 8-bit luma: 24 on video-range luma (16-235), as QC reads files
NEAR_BLACK = 9


def fill_profiles(image: Image.Image, across: int, down: int) -> tuple[np.ndarray, np.ndarray]:
    """The picture's fill profiles as `bars` takes them, from a grid of `across` x `down`
    cells: the share of each cell's pixels whose luma is above NEAR_BLACK, averaged along each
    of its `down` rows and each of its `across` columns; (1, down) and (1, across)."""
    # lit pixels as 255 in an 8-bit picture (a 40 MP first frame stays 40 MB, not 160 as
    # floats), box-averaged into the cells: a share in steps of 1/255
    lit = image.convert("L").point(lambda level: 255 if level > NEAR_BLACK else 0)
    cells = np.asarray(lit.resize((across, down), Image.Resampling.BOX), np.float64) / 255
    return cells.mean(axis=1)[None], cells.mean(axis=0)[None]


def bars(rows: np.ndarray, columns: np.ndarray, size: tuple[int, int]) -> list[str]:
    """The bar pairs of a picture from its fill profiles, (frames, rows) and (frames, columns)
    of a cell grid, and its pixel `size` (width, height): e.g. ["top 40 px, bottom 40 px"];
    [] for none."""
    width, height = size
    found = []
    for profile, side, names in ((rows, height, ("top", "bottom")),
                                 (columns, width, ("left", "right"))):
        cells = profile.shape[1]
        leading, trailing = _band(profile), _band(profile[:, ::-1])
        if min(leading, trailing) >= max(BAR_SHARE * cells, 1):
            px = side / cells
            found.append(f"{names[0]} {leading * px:.0f} px, {names[1]} {trailing * px:.0f} px")
    return found


def _band(profile: np.ndarray) -> int:
    """Leading cells of a (frames, cells) fill profile that are empty in every frame, when
    the picture beside them is full in most frames (a straight edge); else 0."""
    empty = profile.max(axis=0) <= BAR_EMPTY
    depth = int(np.argmin(empty)) if not empty.all() else 0
    if depth == 0:
        return 0
    # the edge may share a cell with the bar, or two when the picture is smaller than the grid
    beside = profile[:, depth:depth + 3].max(axis=1)
    return depth if float(np.median(beside)) >= BAR_EDGE_FULL else 0

"""Fonts for burned-in text, installed from PyPI wheels (no system fonts needed).

libass finds fonts through fontconfig; `fontconfig_file` writes a config whose only font folder
holds links to the packaged Noto fonts, and ffmpeg is run with FONTCONFIG_FILE pointing at it.
"""

from __future__ import annotations

import functools
import importlib.resources
import unicodedata
from collections.abc import Collection
from pathlib import Path

# family name -> (package, file inside it)
FONTS = {
    "Noto Sans": ("fontpkg_noto_sans", "files/NotoSans[wdth,wght].ttf"),
    "Noto Sans Arabic": ("fontpkg_noto_sans_arabic", "files/NotoSansArabic[wdth,wght].ttf"),
    "Noto Sans CJK TC": ("cvttf_NotoSansCJK_Regular", "NotoSansCJKtc-Regular.otf"),
    "Noto Sans Thai": ("fontpkg_noto_sans_thai", "files/NotoSansThai[wdth,wght].ttf"),
    # Hebrew: no Noto Sans Hebrew is packaged on PyPI; Heebo is a Hebrew and Latin sans
    "Heebo": ("fontpkg_heebo", "files/Heebo[wght].ttf"),
}
CJK_LANGUAGES = {"zh", "ja", "ko", "yue"}
ARABIC_SCRIPT_LANGUAGES = {"ar", "fa", "ur", "ps"}
HEBREW_SCRIPT_LANGUAGES = {"he", "iw", "yi"}  # (iw: Hebrew's code before 1989, still met)
RIGHT_TO_LEFT_LANGUAGES = ARABIC_SCRIPT_LANGUAGES | HEBREW_SCRIPT_LANGUAGES


def font_family(locale: str) -> str:
    """The family that covers a locale's script (Latin, Cyrillic, Greek and Devanagari; CJK;
    Arabic; Hebrew; Thai)."""
    language = locale.split("-")[0].lower()
    if language in CJK_LANGUAGES:
        return "Noto Sans CJK TC"  # its Han, Kana and Hangul cover SC, TC, JP and KR text
    if language in ARABIC_SCRIPT_LANGUAGES:
        return "Noto Sans Arabic"
    if language in HEBREW_SCRIPT_LANGUAGES:
        return "Heebo"
    if language == "th":
        return "Noto Sans Thai"
    return "Noto Sans"


def font_files() -> dict[str, Path]:
    """family -> installed font file."""
    out = {}
    for family, (package, name) in FONTS.items():
        path = Path(str(importlib.resources.files(package).joinpath(name)))
        if not path.is_file():
            raise FileNotFoundError(f"font {family!r} missing: {path} (reinstall {package})")
        out[family] = path
    return out


class FontRejected(ValueError):
    """The bytes are not a font this pipeline accepts; the message says why, for the team."""


def code_points(path: Path) -> frozenset[int]:
    """The characters `path` has a glyph for (its best Unicode character map), or
    FontRejected when the map cannot be read. Read once per file version: the end card asks
    for each text of every card it composes (~9 ms a read of Noto Sans)."""
    try:
        stat = Path(path).stat()
    except OSError as err:
        raise FontRejected(f"the font's character map cannot be read ({err})") from err
    return _code_points(str(Path(path).resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _code_points(path: str, _inode: int, _mtime_ns: int, _size: int) -> frozenset[int]:
    """`code_points` of one version of a file (its inode, modification time and size in the
    key, so a file replaced or rewritten in place is read again)."""
    from fontTools.ttLib import TTFont, TTLibError

    try:
        with TTFont(path, lazy=True, fontNumber=0) as font:
            return frozenset(font.getBestCmap() or {})
    except (TTLibError, OSError, ValueError, KeyError, AssertionError) as err:
        raise FontRejected(f"the font's character map cannot be read ({err})") from err


@functools.cache
def packaged_code_points() -> frozenset[int]:
    """What libass can draw: it falls back across every packaged family for a character the
    locale's own family lacks (Cyrillic in an Arabic caption is drawn with Noto Sans)."""
    return frozenset().union(*(code_points(path) for path in font_files().values()))


# Characters a shaper draws nothing for, so no font needs a glyph: format characters (ZWJ,
# bidi marks), variation selectors and the combining grapheme joiner.
_VARIATION_SELECTORS = (range(0xFE00, 0xFE10), range(0xE0100, 0xE01F0))
_COMBINING_GRAPHEME_JOINER = 0x034F


def _needs_glyph(char: str) -> bool:
    point = ord(char)
    return not (char.isspace() or unicodedata.category(char) in ("Cf", "Cc")
                or point == _COMBINING_GRAPHEME_JOINER
                or any(point in selectors for selectors in _VARIATION_SELECTORS))


def undrawable(text: str, covered: Collection[int]) -> list[str]:
    """The distinct characters of `text`, in order, that need a glyph `covered` lacks."""
    return list(dict.fromkeys(c for c in text if _needs_glyph(c) and ord(c) not in covered))


def fontconfig_file(cache_dir: Path) -> Path:
    """A fonts.conf listing only the packaged fonts (created once per cache dir)."""
    folder = cache_dir / "fonts"
    folder.mkdir(parents=True, exist_ok=True)
    for family, path in font_files().items():
        link = folder / (family.replace(" ", "") + path.suffix)
        if not link.exists():
            link.symlink_to(path)
    config = cache_dir / "fonts.conf"
    config.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        f"  <dir>{folder}</dir>\n  <cachedir>{cache_dir / 'fontcache'}</cachedir>\n"
        "</fontconfig>\n")
    return config


FONT_MAGIC = (b"\x00\x01\x00\x00", b"true", b"OTTO")  # TrueType, Apple TrueType, OpenType
MAX_FONT_BYTES = 20 * 2**20


def verify_font(data: bytes, max_bytes: int = MAX_FONT_BYTES) -> None:
    """A single TrueType or OpenType font FreeType can open, or FontRejected."""
    import io

    from PIL import ImageFont

    if len(data) > max_bytes:
        raise FontRejected(f"the file is {len(data):,} bytes; the limit is {max_bytes:,}")
    if not data.startswith(FONT_MAGIC):
        raise FontRejected("not a TrueType or OpenType font (.ttf or .otf expected)")
    try:
        ImageFont.truetype(io.BytesIO(data), 12)
    except OSError as err:
        raise FontRejected(f"the font cannot be read ({err})") from err


def font_suffix(data: bytes) -> str:
    """`verify_font`, then the suffix the font's content calls for: .otf for CFF outlines."""
    verify_font(data)
    return ".otf" if data.startswith(b"OTTO") else ".ttf"

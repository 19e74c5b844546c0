"""The campaign brief: what a marketing team submits, validated as a whole.

Briefs come as YAML or JSON. `load_brief` reports every problem at once, each with its path in
the brief (`scenes[1].duration_s: ...`), so a team can fix a brief in one pass.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any

import langcodes
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.errors import BriefInvalid

MAX_BRIEF_BYTES = 1_000_000
MAX_CLIP_SECONDS = 193 / 24  # one model clip: 193 frames at 24 fps
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"

Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Aspect(StrEnum):
    LANDSCAPE = "16:9"
    PORTRAIT = "9:16"
    SQUARE = "1:1"


class Platform(StrEnum):
    YOUTUBE = "youtube"
    TIKTOK = "tiktok"
    INSTAGRAM = "instagram"
    FACEBOOK = "facebook"
    WEB = "web"
    BROADCAST = "broadcast"


class DubbingStrategy(StrEnum):
    LIPSYNC = "lipsync"  # the scene is rendered again per language: lips match the language
    VOICEOVER = "voiceover"  # one master picture; only the soundtrack is generated per language


class LoudnessProfile(StrEnum):
    WEB = "web"  # -14 LUFS integrated, -1 dBTP
    BROADCAST = "broadcast"  # EBU R128: -23 LUFS, -1 dBTP


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def normalize_locale(tag: str) -> str:
    """A valid BCP-47 tag in its standard form (`en-us` -> `en-US`), or ValueError."""
    try:
        valid = langcodes.tag_is_valid(tag) and langcodes.Language.get(tag).is_valid()
    except (ValueError, LookupError):
        valid = False
    if not valid:
        raise ValueError(f"{tag!r} is not a valid BCP-47 language tag (e.g. en-US, de-DE, zh-CN)")
    return str(langcodes.standardize_tag(tag))


Locale = Annotated[str, AfterValidator(normalize_locale)]


class DialogueLine(Frozen):
    speaker: ShortText
    text: LongText


class OnScreenText(Frozen):
    brand_line: ShortText | None = None
    call_to_action: ShortText | None = None
    price: ShortText | None = None


class Scene(Frozen):
    scene_id: Slug
    visual: LongText = Field(description="What the camera sees, in words.")
    duration_s: float = Field(gt=0, le=MAX_CLIP_SECONDS)
    first_frame: str | None = Field(
        default=None, max_length=1024,
        description="Optional first image: a path relative to the brief, or an s3:// URI.")
    ambience: LongText | None = None
    dialogue: dict[str, list[DialogueLine]] = Field(default_factory=dict)
    on_screen_text: dict[str, OnScreenText] = Field(default_factory=dict)
    focus: tuple[float, float] | None = Field(
        default=None, description="Crop focus point (x, y) in [0, 1] for aspect variants.")

    @field_validator("first_frame")
    @classmethod
    def _safe_reference(cls, value: str | None) -> str | None:
        if value is None or value.startswith("s3://"):
            return value
        if value.startswith("/") or ".." in value.split("/") or "\\" in value:
            raise ValueError(f"{value!r} must be a relative path inside the brief's folder or an "
                             "s3:// URI")
        return value

    @field_validator("dialogue", "on_screen_text", mode="before")
    @classmethod
    def _locale_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {normalize_locale(str(k)): v for k, v in value.items()}
        return value

    @field_validator("focus")
    @classmethod
    def _focus_in_frame(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(0.0 <= v <= 1.0 for v in value):
            raise ValueError(f"focus {value} must be two numbers in [0, 1]")
        return value


class Brief(Frozen):
    campaign: Slug = Field(description="Campaign slug: lower-case letters, digits and dashes.")
    brand: ShortText
    product: ShortText
    locales: list[Locale] = Field(min_length=1, max_length=40)
    platforms: list[Platform] = Field(default_factory=lambda: [Platform.WEB], min_length=1)
    aspects: list[Aspect] = Field(min_length=1)
    scenes: list[Scene] = Field(min_length=1, max_length=50)
    dubbing: DubbingStrategy = DubbingStrategy.LIPSYNC
    loudness_profile: LoudnessProfile = LoudnessProfile.WEB
    max_qc_retries: int = Field(default=1, ge=0, le=5)
    requires_approval: bool = False
    seed: int = Field(default=0, ge=0, lt=2**31)

    @field_validator("locales", "aspects", "platforms")
    @classmethod
    def _unique(cls, value: list[Any]) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError(f"entries repeat: {[str(v) for v in value]}")
        return value

    @model_validator(mode="after")
    def _every_scene_speaks_every_locale(self) -> Brief:
        problems = []
        scene_ids = [scene.scene_id for scene in self.scenes]
        if len(set(scene_ids)) != len(scene_ids):
            problems.append(f"scenes: scene_id values repeat: {scene_ids}")
        for index, scene in enumerate(self.scenes):
            for field in ("dialogue", "on_screen_text"):
                extra = set(getattr(scene, field)) - set(self.locales)
                if extra:
                    problems.append(f"scenes[{index}].{field}: locale(s) {sorted(extra)} are not "
                                    f"in locales {self.locales}")
            # Dialogue is optional (a scene may be music and ambience only), but when a scene
            # speaks, it must speak in every language of the campaign.
            if scene.dialogue and set(scene.dialogue) != set(self.locales):
                missing = sorted(set(self.locales) - set(scene.dialogue))
                if missing:
                    problems.append(f"scenes[{index}].dialogue: no lines for {missing}")
        if problems:
            raise ValueError(_JOIN.join(problems))
        return self


_JOIN = " ;; "  # separates whole-brief problems, each already carrying its own path


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(brief)"


def _parse(raw: str, fmt: str | None) -> Any:
    if fmt == "json" or (fmt is None and raw.lstrip().startswith("{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise BriefInvalid([("(document)", f"invalid JSON at line {err.lineno} column "
                                               f"{err.colno}: {err.msg}")]) from err
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise BriefInvalid([("(document)", f"invalid YAML{where}: {problem}")]) from err


def load_brief(raw: bytes | str, *, fmt: str | None = None) -> Brief:
    """Parse and validate a YAML or JSON brief; BriefInvalid lists every problem with its path."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_BRIEF_BYTES:
        raise BriefInvalid([("(document)", f"brief is {size:,} bytes; the limit is "
                                           f"{MAX_BRIEF_BYTES:,}")])
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BriefInvalid([("(document)", f"not UTF-8 text ({err.reason} at byte "
                                               f"{err.start})")]) from err
    if fmt not in (None, "yaml", "json"):
        raise BriefInvalid([("(document)", f"unknown format {fmt!r}; use yaml or json")])
    data = _parse(raw, fmt)
    if not isinstance(data, dict):
        raise BriefInvalid([("(document)", "a brief is a mapping of fields (campaign, brand, "
                                           f"...), found {type(data).__name__}")])
    try:
        return Brief.model_validate(data)
    except ValidationError as err:
        problems = []
        for error in err.errors():
            message = re.sub(r"^(Value|Assertion) error, ", "", error["msg"])
            if not error["loc"] and _JOIN in message or message.startswith("scene"):
                for item in message.split(_JOIN):
                    path, _, text = item.partition(": ")
                    problems.append((path, text) if text else ("(brief)", item))
                continue
            if error["type"] == "string_pattern_mismatch" and error["loc"][-1] in (
                    "campaign", "scene_id"):
                message = (f"{error['input']!r} must be a slug: lower-case letters, digits and "
                           "dashes, at most 63 characters")
            elif error["type"] == "string_too_long":
                message = f"too long ({len(str(error['input'])):,} characters); {message}"
            problems.append((_path(error["loc"]), message))
        raise BriefInvalid(problems) from err

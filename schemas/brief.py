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
# Loudness is measured in 400 ms gating blocks (ITU-R BS.1770); a shorter scene has no loudness
# and can never pass QC. 0.5 s renders as 13 frames (0.54 s), the shortest clip that measures.
MIN_SCENE_SECONDS = 0.5
MAX_NESTING = 16  # a brief is at most 5 levels deep; deeper documents are refused unparsed
MAX_LINES_PER_LOCALE = 20
MAX_LOCALES = 40
MAX_SCENES = 50
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
HEX_COLOUR_PATTERN = r"^#[0-9A-Fa-f]{6}$"
MAX_BRAND_COLOURS = 8
# A dissolve longer than this stops reading as a transition; 0.25 s (6 frames) is a short mix.
MAX_CROSSFADE_SECONDS = 2.0
DEFAULT_CROSSFADE_SECONDS = 0.25

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


class Transition(StrEnum):
    CUT = "cut"
    CROSSFADE = "crossfade"  # picture dissolve and audio crossfade of `crossfade_s`


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


# The validators' bodies are plain functions: mutmut (`make mutation`) skips decorated ones.
def _normalized_locale_keys(value: Any) -> Any:
    """A locale-keyed mapping with its keys normalised (en_us -> en-US)."""
    # Oversized mappings are left to the max_length check (no tag parsing for each key).
    if isinstance(value, dict) and len(value) <= MAX_LOCALES:
        return {normalize_locale(str(k)): v for k, v in value.items()}
    return value


def _without_repeats(value: list[Any]) -> list[Any]:
    if len(set(value)) != len(value):
        raise ValueError(f"entries repeat: {[str(v) for v in value]}")
    return value


def _checked_focus(value: tuple[float, float] | None) -> tuple[float, float] | None:
    if value is not None and not all(0.0 <= v <= 1.0 for v in value):
        raise ValueError(f"focus {value} must be two numbers in [0, 1]")
    return value


def _check_reference(value: str | None) -> str | None:
    """A file the brief points at: relative inside the brief's folder, or an s3:// URI."""
    if value is None or value.startswith("s3://"):
        return value
    if value.startswith("/") or ".." in value.split("/") or "\\" in value:
        raise ValueError(f"{value!r} must be a relative path inside the brief's folder or an "
                         "s3:// URI")
    return value


FileReference = Annotated[str, StringConstraints(min_length=1, max_length=1024),
                          AfterValidator(_check_reference)]


class DialogueLine(Frozen):
    speaker: ShortText
    text: LongText


class OnScreenText(Frozen):
    brand_line: ShortText | None = None
    call_to_action: ShortText | None = None
    price: ShortText | None = None


MAX_LORA_SCALE = 4.0  # beyond a few times its trained strength a LoRA only distorts


class LoraChoice(Frozen):
    """A registered LoRA (`mova-ads lora add NAME FOLDER`) and the strength to render it at."""

    name: Slug
    scale: float = Field(default=1.0, ge=-MAX_LORA_SCALE, le=MAX_LORA_SCALE)


class Scene(Frozen):
    scene_id: Slug
    visual: LongText = Field(description="What the camera sees, in words.")
    duration_s: float = Field(ge=MIN_SCENE_SECONDS, le=MAX_CLIP_SECONDS)
    first_frame: FileReference | None = Field(
        default=None,
        description="Optional first image: a path relative to the brief, or an s3:// URI.")
    ambience: LongText | None = None
    dialogue: dict[str, Annotated[list[DialogueLine], Field(max_length=MAX_LINES_PER_LOCALE)]] \
        = Field(default_factory=dict, max_length=MAX_LOCALES)
    on_screen_text: dict[str, OnScreenText] = Field(default_factory=dict, max_length=MAX_LOCALES)
    focus: tuple[float, float] | None = Field(
        default=None, description="Crop focus point (x, y) in [0, 1] for aspect variants.")
    continue_from: Slug | None = Field(
        default=None, description="Start from the last frame of this other scene's render.")
    lora: LoraChoice | None = Field(
        default=None, description="This scene's LoRA, in place of the campaign's.")

    _locale_keys = field_validator("dialogue", "on_screen_text", mode="before")(
        _normalized_locale_keys)
    _focus_in_frame = field_validator("focus")(_checked_focus)




HexColour = Annotated[str, StringConstraints(pattern=HEX_COLOUR_PATTERN)]


class BrandKit(Frozen):
    """What the end card is made of. The CTA comes from `call_to_action` or, when a locale has
    none there, from the last scene whose on-screen text carries one."""

    logo: FileReference = Field(description="Logo image: relative to the brief, or s3://.")
    colours: list[HexColour] = Field(
        min_length=1, max_length=MAX_BRAND_COLOURS,
        description="#RRGGBB; the first is the end card's background, the second its text.")
    font: FileReference | None = Field(
        default=None, description="Optional font file (TTF/OTF) for the end card text.")
    legal: dict[str, LongText] = Field(default_factory=dict, max_length=MAX_LOCALES)
    call_to_action: dict[str, ShortText] = Field(default_factory=dict, max_length=MAX_LOCALES)
    end_card_s: float = Field(default=2.0, ge=1.0, le=10.0)

    _locale_keys = field_validator("legal", "call_to_action", mode="before")(
        _normalized_locale_keys)


class Brief(Frozen):
    campaign: Slug = Field(description="Campaign slug: lower-case letters, digits and dashes.")
    brand: ShortText
    product: ShortText
    locales: list[Locale] = Field(min_length=1, max_length=MAX_LOCALES)
    platforms: list[Platform] = Field(default_factory=lambda: [Platform.WEB], min_length=1,
                                      max_length=len(Platform))
    aspects: list[Aspect] = Field(min_length=1, max_length=len(Aspect))
    scenes: list[Scene] = Field(min_length=1, max_length=MAX_SCENES)
    dubbing: DubbingStrategy = DubbingStrategy.LIPSYNC
    loudness_profile: LoudnessProfile = LoudnessProfile.WEB
    max_qc_retries: int = Field(default=1, ge=0, le=5)
    requires_approval: bool = False
    seed: int = Field(default=0, ge=0, lt=2**31)
    transition: Transition = Transition.CUT
    crossfade_s: float = Field(default=DEFAULT_CROSSFADE_SECONDS, gt=0,
                               le=MAX_CROSSFADE_SECONDS)
    brand_kit: BrandKit | None = None
    # The deliverable is the spot; each scene finish is also published as a cut-down when set.
    publish_scenes: bool = False
    lora: LoraChoice | None = Field(
        default=None, description="A registered LoRA for every scene without its own.")

    def lora_for(self, scene: Scene) -> LoraChoice | None:
        return scene.lora or self.lora

    def lora_uses(self) -> list[tuple[str, str]]:
        """(path in the brief, LoRA name) of every LoRA the brief names."""
        uses = [("lora.name", self.lora.name)] if self.lora else []
        return uses + [(f"scenes[{i}].lora.name", s.lora.name)
                       for i, s in enumerate(self.scenes) if s.lora]

    @property
    def end_card_s(self) -> float:
        """Seconds of end card after the last scene (0 without a brand kit)."""
        return self.brand_kit.end_card_s if self.brand_kit else 0.0

    @property
    def spot_duration_s(self) -> float:
        """Planned length of each spot: the scenes, less the overlaps of the crossfades between
        them, plus the end card (which always follows on a cut)."""
        overlaps = (len(self.scenes) - 1) * self.crossfade_s \
            if self.transition == Transition.CROSSFADE else 0.0
        return sum(s.duration_s for s in self.scenes) - overlaps + self.end_card_s

    _unique = field_validator("locales", "aspects", "platforms")(
        _without_repeats)

    @model_validator(mode="after")
    def _consistent(self) -> Brief:
        if problems := self._problems():
            raise ValueError(_JOIN.join(problems))
        return self

    def _problems(self) -> list[str]:
        """What no single field shows: scenes against locales, and what a spot needs."""
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
        return problems + self._spot_problems()

    def _spot_problems(self) -> list[str]:
        """Chains, transitions, brand kit and platform limits: what it takes to assemble a spot."""
        # Imported here: the presets import this module (Aspect, Platform, LoudnessProfile).
        from schemas.platforms import aspect_problem, duration_problem

        problems = _chain_problems(self.scenes)
        if self.transition == Transition.CROSSFADE and len(self.scenes) > 1:
            for index, scene in enumerate(self.scenes):
                # A dissolve at each end of the scene must leave some of it undissolved.
                if scene.duration_s < 2 * self.crossfade_s:
                    problems.append(f"scenes[{index}].duration_s: {scene.duration_s} s is shorter "
                                    f"than two crossfades of {self.crossfade_s} s")
        if self.brand_kit is not None:
            for field in ("legal", "call_to_action"):
                given = set(getattr(self.brand_kit, field))
                if extra := sorted(given - set(self.locales)):
                    problems.append(f"brand_kit.{field}: locale(s) {extra} are not in locales "
                                    f"{self.locales}")
                # Legal text is all-or-nothing: a spot without its market's line is not legal.
                if field == "legal" and given and set(self.locales) - given:
                    problems.append(f"brand_kit.legal: no line for "
                                    f"{sorted(set(self.locales) - given)}")
        duration = self.spot_duration_s
        for index, platform in enumerate(self.platforms):
            reasons = [aspect_problem(platform, aspect) for aspect in self.aspects]
            reasons.append(duration_problem(platform, duration))
            problems += [f"platforms[{index}]: {reason}" for reason in reasons if reason]
        return problems


def _chain_problems(scenes: list[Scene]) -> list[str]:
    """`continue_from` must name another scene of the brief, start no scene twice and loop
    nowhere; each problem carries the path of the scene that names the wrong one."""
    problems = []
    index_of = {scene.scene_id: i for i, scene in enumerate(scenes)}
    for index, scene in enumerate(scenes):
        parent = scene.continue_from
        if parent is None:
            continue
        path = f"scenes[{index}].continue_from"
        if parent == scene.scene_id:
            problems.append(f"{path}: a scene cannot continue from itself")
        elif parent not in index_of:
            problems.append(f"{path}: {parent!r} is not a scene of this brief (scene ids: "
                            f"{list(index_of)})")
        if scene.first_frame is not None:
            problems.append(f"{path}: the scene also has a first_frame; it starts from one or "
                            "the other")
    for index, scene in enumerate(scenes):
        chain, current = [scene.scene_id], scene.continue_from
        while current is not None and current in index_of and current != scene.scene_id:
            if current in chain:  # a loop that does not pass through this scene: reported there
                break
            chain.append(current)
            current = scenes[index_of[current]].continue_from
        if current == scene.scene_id and len(chain) > 1:
            problems.append(f"scenes[{index}].continue_from: the chain loops back to this scene: "
                            f"{' -> '.join([*chain, scene.scene_id])}")
    return problems


_JOIN = " ;; "  # separates whole-brief problems, each already carrying its own path
_WHOLE_BRIEF_PATHS = ("platforms[", "brand_kit.")  # single whole-brief problems with a path


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(brief)"


class _BriefYamlLoader(yaml.SafeLoader):
    """Safe YAML without anchors/aliases: a brief never needs them, and aliases let a few bytes
    stand for millions of nodes that validation would then walk."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a brief", event.start_mark)
        return super().compose_node(parent, index)


def _nesting_depth(text: str) -> int:
    """Deepest bracket/indent nesting a parser would recurse into, counted without parsing:
    the larger of the bracket depth and the indentation depth (in steps of one space)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    indents = {len(line) - len(line.lstrip(" ")) for line in text.splitlines() if line.strip()}
    return max(deepest, len(indents) - 1)


def _parse(raw: str, fmt: str | None) -> Any:
    # Checked before parsing: both parsers recurse per nesting level (RecursionError, a 500).
    # Brackets inside quoted strings count too, which only matters for absurd briefs.
    if _nesting_depth(raw) > MAX_NESTING:
        raise BriefInvalid([("(document)", f"nested more than {MAX_NESTING} levels deep; a brief "
                                           "is a few levels of mappings and lists")])
    if fmt == "json" or (fmt is None and raw.lstrip().startswith("{")):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as err:
            raise BriefInvalid([("(document)", f"invalid JSON at line {err.lineno} column "
                                               f"{err.colno}: {err.msg}")]) from err
    try:
        return yaml.load(raw, Loader=_BriefYamlLoader)  # noqa: S506 - a SafeLoader subclass
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
            if not error["loc"] and (_JOIN in message or message.startswith(_WHOLE_BRIEF_PATHS)) \
                    or message.startswith("scene"):
                for item in message.split(_JOIN):
                    path, _, text = item.partition(": ")
                    problems.append((path, text) if text else ("(brief)", item))
                continue
            if error["type"] == "string_pattern_mismatch" and error["loc"][-1] in (
                    "campaign", "scene_id"):
                message = (f"{error['input']!r} must be a slug: lower-case letters, digits and "
                           "dashes, at most 63 characters")
            elif error["type"] == "greater_than_equal" and error["loc"][-1] == "duration_s":
                message = (f"{error['input']} s is too short: a scene lasts at least "
                           f"{MIN_SCENE_SECONDS} s (loudness is measured over 0.4 s blocks, so a "
                           "shorter scene can never pass QC)")
            elif error["type"] == "string_too_long":
                message = f"too long ({len(str(error['input'])):,} characters); {message}"
            problems.append((_path(error["loc"]), message))
        raise BriefInvalid(problems) from err

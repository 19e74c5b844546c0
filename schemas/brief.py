"""The campaign brief: what a marketing team submits, validated as a whole.

Briefs come as YAML or JSON. `load_brief` reports every problem at once, each with its path in
the brief (`scenes[1].duration_s: ...`), so a team can fix a brief in one pass.
"""

from __future__ import annotations

import json
import re
import unicodedata
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import langcodes
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
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
MAX_NESTING = 16  # a brief is at most 5 levels deep; deeper ones are refused before they are built
MAX_NUMBER_DIGITS = 100  # the longest number a brief takes is a 10-digit seed
MAX_LINES_PER_LOCALE = 20
MAX_LOCALES = 40
MAX_SCENES = 50
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
HEX_COLOUR_PATTERN = r"^#[0-9A-Fa-f]{6}$"
MAX_BRAND_COLOURS = 8
# A dissolve longer than this stops reading as a transition; 0.25 s (6 frames) is a short mix.
MAX_CROSSFADE_SECONDS = 2.0
DEFAULT_CROSSFADE_SECONDS = 0.25

# What draws nothing: spaces, zero-width and other format characters, combining marks alone.
_INVISIBLE_CATEGORIES = {"Zs", "Zl", "Zp", "Cf", "Mn", "Me", "Cc"}


def readable_text(text: str) -> str:
    """Text a caption, a burned-in line or an end card can draw: line breaks and tabs become
    spaces (burned-in text is one line: a break cut 'Aurora\nOne' to 'Aurora'), other control
    characters are refused (a NUL erased every line drawn after it), and at least one character
    must be visible (zero-width spaces alone passed `min_length`)."""
    control = next((c for c in text if unicodedata.category(c) == "Cc" and not c.isspace()), None)
    if control is not None:
        raise ValueError(f"control character U+{ord(control):04X} at position "
                         f"{text.index(control)}; write plain text")
    text = "".join(" " if c.isspace() else c for c in text)
    if all(unicodedata.category(c) in _INVISIBLE_CATEGORIES for c in text):
        raise ValueError("no visible character (only spaces, zero-width characters or "
                         "combining marks)")
    return text


Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
                      AfterValidator(readable_text)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
                     AfterValidator(readable_text)]


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
    # NaN and infinity are no number a brief can mean: "should be a finite number" (a NaN
    # failed a range check with "should be less than or equal to ..."). Numbers are Strict*:
    # `seed: true` or `duration_s: "4"` are mistakes, not values to convert (switches still
    # read yes / no, which YAML 1.2 leaves as text).
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


# RFC 5646 (4.4.1) asks implementations to handle tags of at least 35 characters; longer ones
# are private-use chains that, as parts of file names, ran past the file system's limit.
MAX_LOCALE_CHARS = 35


def normalize_locale(tag: str) -> str:
    """A valid BCP-47 tag in its standard form (`en-us` -> `en-US`), or ValueError."""
    if len(tag) > MAX_LOCALE_CHARS:
        raise ValueError(f"{tag[:40]!r}... is a language tag of {len(tag):,} characters; at most "
                         f"{MAX_LOCALE_CHARS} are taken (e.g. en-US, de-DE, zh-CN)")
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
    """A locale-keyed mapping with its keys normalised (en_us -> en-US); two keys naming one
    language are refused, as one would silently replace the other's lines."""
    # Oversized mappings are left to the max_length check (no tag parsing for each key).
    if not isinstance(value, dict) or len(value) > MAX_LOCALES:
        return value
    normalized: dict[str, Any] = {}
    spelt: dict[str, Any] = {}
    for key, entry in value.items():
        tag = normalize_locale(str(key))
        if tag in normalized:
            raise ValueError(f"{spelt[tag]!r} and {key!r} are the same language ({tag}): "
                             "give its lines once")
        normalized[tag], spelt[tag] = entry, key
    return normalized


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

    def given(self) -> list[tuple[str, str]]:
        """(field name, text) of each text that is set, in field order."""
        return [(name, value) for name in type(self).model_fields
                if (value := getattr(self, name))]


MAX_LORA_SCALE = 4.0  # beyond a few times its trained strength a LoRA only distorts


class LoraChoice(Frozen):
    """A registered LoRA (`mova-ads lora add NAME FOLDER`) and the strength to render it at."""

    name: Slug
    scale: StrictFloat = Field(default=1.0, ge=-MAX_LORA_SCALE, le=MAX_LORA_SCALE)


class Scene(Frozen):
    scene_id: Slug
    visual: LongText = Field(description="What the camera sees, in words.")
    duration_s: StrictFloat = Field(ge=MIN_SCENE_SECONDS, le=MAX_CLIP_SECONDS)
    first_frame: FileReference | None = Field(
        default=None,
        description="Optional first image: a path relative to the brief, or an s3:// URI.")
    ambience: LongText | None = None
    dialogue: dict[str, Annotated[list[DialogueLine], Field(max_length=MAX_LINES_PER_LOCALE)]] \
        = Field(default_factory=dict, max_length=MAX_LOCALES)
    on_screen_text: dict[str, OnScreenText] = Field(default_factory=dict, max_length=MAX_LOCALES)
    focus: tuple[StrictFloat, StrictFloat] | None = Field(
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
    end_card_s: StrictFloat = Field(default=2.0, ge=1.0, le=10.0)

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
    max_qc_retries: StrictInt = Field(default=1, ge=0, le=5)
    requires_approval: bool = False
    seed: StrictInt = Field(default=0, ge=0, lt=2**31)
    transition: Transition = Transition.CUT
    crossfade_s: StrictFloat = Field(default=DEFAULT_CROSSFADE_SECONDS, gt=0,
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
        """Length each spot will have: the scenes as rendered (whole 4k+1-frame renders, trimmed
        to plan), less the crossfade overlaps in whole frames, plus the end card (which always
        follows on a cut). The one arithmetic assembly uses: `schemas.spot_timing`."""
        from schemas.spot_timing import brief_spot_timing  # imports this module

        return brief_spot_timing(self).duration_s

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
        from schemas.spot_timing import brief_spot_timing

        problems = _chain_problems(self.scenes)
        # Assembly's own rule (a crossfade at each end must leave some of a scene undissolved)
        timing = brief_spot_timing(self)
        problems += [f"scenes[{index}].duration_s: {why}"
                     for index, why in timing.crossfade_problems()]
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
        duration = timing.duration_s
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


def _too_deep() -> BriefInvalid:
    return BriefInvalid([("(document)", f"nested more than {MAX_NESTING} levels deep; a brief is "
                                        "a few levels of mappings and lists")])


def _integer(digits: str, base: int = 10) -> int:
    """int() of a number's digits, refusing absurd lengths first: past 4300 digits int() raises
    a ValueError about sys.set_int_max_str_digits, and long decimals cost quadratic time."""
    if len(digits) > MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {len(digits):,} digits; a brief's numbers have at most "
                         f"{MAX_NUMBER_DIGITS}")
    return int(digits, base)


# Plain (unquoted) YAML scalars are typed by the YAML 1.2 core schema, not YAML 1.1's: 1.1 read
# `16:9` as the base-60 number 969 and `no` (Norwegian) as false, and the errors named values
# the brief never held. Only null/~, true/false and 1.2 numbers are typed; yes/no/on/off, 1:30,
# dates and `<<` (no merge keys) stay text, and the schema's booleans still read `yes` from text.
_CORE_SCALAR = re.compile(
    r"(?P<null>null|Null|NULL|~|)|(?P<bool>true|True|TRUE|false|False|FALSE)"
    r"|(?P<int>[-+]?[0-9]+)|(?P<oct>0o[0-7]+)|(?P<hex>0x[0-9a-fA-F]+)"
    r"|(?P<float>[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?)"
    r"|(?P<special>[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))")
_INT_BASES = {"int": 10, "oct": 8, "hex": 16}


def _plain_scalar(text: str) -> Any:
    match = _CORE_SCALAR.fullmatch(text)
    kind = match.lastgroup if match else None
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind in _INT_BASES:
        return _integer(text if kind == "int" else text[2:], _INT_BASES[kind])
    if kind == "float":
        return float(text)
    if kind == "special":  # float() spells .inf and .nan without the dot
        return float(text.replace(".", ""))
    return text


def _refuse(event: yaml.Event, problem: str) -> NoReturn:
    raise yaml.composer.ComposerError(None, None, problem, event.start_mark)


# Aliases let a few bytes stand for millions of nodes that validation would then walk; tags name
# types a brief has no use for. Anchors alone are harmless.
_NO_ALIASES = "YAML aliases (*name) are not allowed in a brief"
_NO_TAGS = "YAML tags (!name, !!type) are not allowed in a brief"


def _scalar(event: yaml.ScalarEvent) -> Any:
    if event.tag is not None:
        _refuse(event, _NO_TAGS)
    if not event.implicit[0]:  # quoted, or a block scalar (| >): text as written
        return event.value
    try:
        return _plain_scalar(event.value)
    except ValueError as err:  # a number too long to read
        _refuse(event, str(err))


_NO_KEY = object()  # in `_YamlTree._keys`: the mapping's next value is a key, not a value


def _yaml_kind(value: Any) -> str:
    """How YAML read a plain scalar, in words: `1` a number, `null` nothing, `true` a switch."""
    return ("nothing (null)" if value is None else "a true/false value"
            if isinstance(value, bool) else "a number")


class _YamlTree:
    """Python values built from YAML parser events with loops, not recursion: nesting is counted
    as collections open, whatever its form (indented blocks, `- - x` on one line, flow)."""

    def __init__(self) -> None:
        self.documents: list[Any] = []  # each document's value, once complete
        self._open: list[Any] = []  # the lists and dicts being filled, outermost first
        self._keys: list[Any] = []  # for each of them, the mapping key awaiting its value

    def add(self, value: Any, event: yaml.Event | None = None) -> None:
        """Place a finished value; `event` is a scalar's, to point at a repeated key."""
        if not self._open:
            self.documents.append(value)
            return
        parent = self._open[-1]
        if isinstance(parent, list):
            parent.append(value)
        elif self._keys[-1] is _NO_KEY:
            if event is not None and not isinstance(value, str):  # `1:`, `null:`, `true:`
                _refuse(event, f"a mapping key must be text, not {_yaml_kind(value)} "
                               f"{event.value!r}")
            if event is not None and value in parent:  # the later value would replace the first
                _refuse(event, f"the key {value!r} appears twice in one mapping")
            self._keys[-1] = value
        else:
            parent[self._keys[-1]] = value
            self._keys[-1] = _NO_KEY

    def open(self, event: yaml.CollectionStartEvent) -> None:
        if event.tag is not None:
            _refuse(event, _NO_TAGS)
        if self._open and isinstance(self._open[-1], dict) and self._keys[-1] is _NO_KEY:
            _refuse(event, "a mapping key must be a plain value, not a list or mapping")
        self._open.append([] if isinstance(event, yaml.SequenceStartEvent) else {})
        self._keys.append(_NO_KEY)
        if len(self._open) > MAX_NESTING:
            raise _too_deep()

    def close(self) -> None:
        self._keys.pop()
        self.add(self._open.pop())


# libyaml's parser, when PyYAML has it: the pure-Python one spends 10 s and more on a 1 MB flow
# list. Either is used for its events only; `_YamlTree` builds the values.
_YAML_PARSER = yaml.CBaseLoader if yaml.__with_libyaml__ else yaml.BaseLoader
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"  # libyaml's own limit, 1000 levels


def _load_yaml(raw: str) -> Any:
    tree = _YamlTree()
    for event in yaml.parse(raw, Loader=_YAML_PARSER):
        if isinstance(event, yaml.ScalarEvent):
            tree.add(_scalar(event), event)
        elif isinstance(event, yaml.CollectionStartEvent):
            tree.open(event)
        elif isinstance(event, yaml.CollectionEndEvent):
            tree.close()
        elif isinstance(event, yaml.AliasEvent):
            _refuse(event, _NO_ALIASES)
        elif isinstance(event, yaml.DocumentStartEvent) and tree.documents:
            _refuse(event, "a second YAML document; a brief is a single document")
    return tree.documents[0] if tree.documents else None


_LINE_BREAKS = "\r\n\x85\u2028\u2029"  # YAML's


def _where(err: yaml.YAMLError, raw: str) -> str:
    """' at line L column C' of a YAML error that has a position."""
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return ""
    if mark.index == len(raw) and mark.line and not mark.column and raw[-1] not in _LINE_BREAKS:
        # libyaml puts the end of a text without a final line break on a line of its own
        return f" at line {mark.line} column {len(raw) - max(map(raw.rfind, _LINE_BREAKS))}"
    return f" at line {mark.line + 1} column {mark.column + 1}"


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


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a key given twice is refused (json keeps the last one silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _parse_json(raw: str) -> Any:
    # Checked before parsing: json recurses per nesting level (RecursionError, a 500).
    # Brackets inside quoted strings count too, which only matters for absurd briefs.
    if _nesting_depth(raw) > MAX_NESTING:
        raise _too_deep()
    try:
        return json.loads(raw, parse_int=_integer, object_pairs_hook=_object_without_repeats)
    except json.JSONDecodeError as err:
        raise BriefInvalid([("(document)", f"invalid JSON at line {err.lineno} column "
                                           f"{err.colno}: {err.msg}")]) from err
    except ValueError as err:  # from _integer: a number too long to read
        raise BriefInvalid([("(document)", f"invalid JSON: {err}")]) from err


def _parse(raw: str, fmt: str | None) -> Any:
    if fmt == "json" or (fmt is None and raw.lstrip().startswith("{")):
        return _parse_json(raw)
    try:
        return _load_yaml(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        if problem == _LIBYAML_TOO_DEEP:  # libyaml can stop there before 17 levels are counted
            raise _too_deep() from err
        raise BriefInvalid([("(document)", f"invalid YAML{_where(err, raw)}: {problem}")]) \
            from err


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
    raw = raw.removeprefix("\ufeff")  # a byte order mark may open either format; json refuses it
    if fmt not in (None, "yaml", "json"):
        raise BriefInvalid([("(document)", f"unknown format {fmt!r}; use yaml or json")])
    data = _parse(raw, fmt)
    if data is None:  # an empty file, or only comments: it was "found NoneType"
        raise BriefInvalid([("(document)", "the brief is empty: a brief is a mapping of "
                                           "fields (campaign, brand, ...)")])
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

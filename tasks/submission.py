"""Submission at the door: validate a brief, check the files it names and its size against
the team's limits, and queue it. Kept apart from the Prefect tasks (tasks/ingest.py) so that
`mova-ads submit` and the review service's submit path do not import the orchestrator."""

from __future__ import annotations

import math
import mimetypes
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path, PurePath
from uuid import UUID

from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import session_scope
from infra.fonts import MAX_FONT_BYTES, FontRejected, font_suffix
from infra.hashing import sha256_bytes
from infra.images import (
    IMAGE_SUFFIXES,
    ImageRejected,
    bars,
    decode_picture,
    fill_profiles,
    translucent_share,
    verify_image,
)
from infra.media import FILL_GRID
from infra.repository import NO_TEAM
from infra.settings import Settings
from infra.storage import InvalidKey, ObjectStore, check_key, input_key, s3_object
from schemas.brief import Brief, load_brief
from schemas.errors import BriefInvalid, PipelineError
from schemas.plan import RENDER_PROFILES, CostEstimate, estimate_cost, plan_variants
from tasks.captions import CUE_MIN_S, LATIN_CHARS_PER_LINE, cue_count
from tasks.end_card import end_card_problems
from tasks.lora import resolve_loras
from tasks.services import Services
from tasks.text_fit import text_problems

SUBMIT_WINDOW = timedelta(minutes=1)


class SubmissionRefused(PipelineError):
    """The team is over its per-minute limit or its daily GPU budget (HTTP 429); the limit
    allows another try after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int = 60) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IdempotencyConflict(PipelineError):
    """An Idempotency-Key the team used before came with another brief (HTTP 422): the
    earlier brief stands, the new one is not stored."""


@dataclass(frozen=True)
class Submitted:
    brief_id: UUID
    created: bool  # False: the same brief (content or Idempotency-Key) was submitted before
    cost: CostEstimate | None


@dataclass(frozen=True)
class _Upload:
    field: str  # where the reference sits, e.g. scenes[0].first_frame or brand_kit.logo
    data: bytes
    suffix: str


def _verifier(services: Services, field: str) -> Callable[[bytes], str]:
    """How a referenced file is checked: a font as a font, everything else as an image. The
    checker returns the suffix its content calls for (the stored key's; never the client's
    file name, which may be long or wrong)."""
    settings = services.settings
    if field == "brand_kit.font":
        return font_suffix
    return partial(_image_suffix, max_pixels=settings.max_first_frame_pixels,
                   max_bytes=settings.max_first_frame_bytes,
                   opaque=field.endswith(".first_frame"))


def _size_limit(services: Services, field: str) -> int:
    """The most bytes a referenced file may have, checked before it is read."""
    return MAX_FONT_BYTES if field == "brand_kit.font" else services.settings.max_first_frame_bytes


# A first frame is cropped to each format's shape and scaled to the render size (64x112 and
# up): smaller, or longer than this, and the scene would start from a smear.
MIN_FIRST_FRAME_SIDE = 64
MAX_FIRST_FRAME_RATIO = 4.0


def _image_suffix(data: bytes, *, max_pixels: int, max_bytes: int, opaque: bool) -> str:
    """`verify_image`; with `opaque` (a first frame: the whole picture the scene starts from)
    a picture with transparent pixels is refused: whatever colour lies under them would show,
    and no background can be guessed."""
    info = verify_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
    if not opaque:
        return IMAGE_SUFFIXES[info.format]
    # A 1x1 or 2x2000 picture was accepted and stretched over the whole frame
    short, long = sorted((info.width, info.height))
    if short < MIN_FIRST_FRAME_SIDE:
        raise ImageRejected(f"the picture is {info.width}x{info.height} px; a first frame "
                            f"needs at least {MIN_FIRST_FRAME_SIDE} px on each side")
    if long > MAX_FIRST_FRAME_RATIO * short:
        raise ImageRejected(f"the picture is {info.width}x{info.height} px, {long / short:.0f} "
                            f"times as long as it is wide; a first frame is at most "
                            f"{MAX_FIRST_FRAME_RATIO:g}:1 (each format crops it to its own "
                            "shape): crop it nearer to the scene's")
    picture = decode_picture(data, keep_alpha=True)
    if share := translucent_share(picture):
        amount = f"{share:.0%}" if share >= 0.01 else "under 1 %"
        raise ImageRejected(f"{amount} of the picture is transparent; a first frame is the "
                            "whole picture the scene starts from: flatten it onto the "
                            "background the scene should have")
    if found := bars(*fill_profiles(picture, *FILL_GRID), picture.size):  # QC fails them
        raise ImageRejected(f"the picture has black bars ({'; '.join(found)}); the render "
                            "would keep them, and QC fails a deliverable with bars: crop them "
                            "off")
    return IMAGE_SUFFIXES[info.format]


def _stored_file(services: Services, store: ObjectStore, key: str, ref: str, where: str,
                 missing: str) -> tuple[list[tuple[str, str]], bytes | None]:
    """Problems of a file already in storage that the brief names: it must exist (else
    `missing`), be within the size limit and be the kind of file its field needs. Its
    bytes when it passes."""
    try:
        check_key(key)
        head = store.head(key)
    except InvalidKey:
        return [(where, f"{ref} is not a valid object key")], None
    if head is None:
        return [(where, missing)], None
    if head.size_bytes > (limit := _size_limit(services, where)):
        return [(where, f"{ref} is {head.size_bytes:,} bytes; the limit is {limit:,}")], None
    with tempfile.TemporaryDirectory() as tmp:
        data = store.get_file(key, Path(tmp) / "file").read_bytes()
    try:
        _verifier(services, where)(data)
    except (ImageRejected, FontRejected) as err:
        return [(where, f"{ref}: {err}")], None
    return [], data


def _s3_file(services: Services, ref: str, where: str
             ) -> tuple[list[tuple[str, str]], bytes | None]:
    """Problems of an s3:// file: it must lie under an allowed prefix, exist, and be an image
    (a font) within the limits. The message for a URI outside the prefixes is the same whether
    or not the object exists: nothing is read there."""
    settings = services.settings
    prefixes = settings.first_frame_prefixes
    if not any(ref.startswith(prefix) for prefix in prefixes):
        allowed = ", ".join(prefixes) if prefixes else "none are allowed on this service"
        return [(where, f"s3:// files must lie under an allowed prefix ({allowed}); "
                        "upload the file with the brief instead")], None
    store, key = s3_object(ref, endpoint_url=settings.s3_endpoint_url, region=settings.aws_region)
    return _stored_file(services, store, key, ref, where,
                        f"{ref} does not exist")


def _team_input(services: Services, ref: str, where: str, team: str
                ) -> tuple[list[tuple[str, str]], bytes | None]:
    """Problems of an `inputs/<team>/...` key: one of this team's own uploads, checked again
    for its field (an upload stored as a font is no first frame). Another team's key and a
    missing one read alike, so nothing tells whether another team stored a file."""
    not_ours = f"{ref!r} is not an upload of team {team}: upload the file with the brief"
    if not ref.startswith(f"inputs/{team}/"):
        return [(where, not_ours)], None
    return _stored_file(services, services.store, ref, ref, where, not_ours)


def _references(brief: Brief) -> list[tuple[str, str]]:
    """(field, reference) of every file the brief points at: first frames, logo, font."""
    refs = [(f"scenes[{index}].first_frame", scene.first_frame)
            for index, scene in enumerate(brief.scenes) if scene.first_frame is not None]
    if brief.brand_kit is not None:
        refs.append(("brand_kit.logo", brief.brand_kit.logo))
        if brief.brand_kit.font is not None:
            refs.append(("brand_kit.font", brief.brand_kit.font))
    return refs


@dataclass
class _CheckedFiles:
    uploads: list[_Upload]  # given with the brief: to be stored
    problems: list[tuple[str, str]]
    contents: dict[str, bytes]  # field -> the verified bytes, uploaded or stored before


def _check_files(services: Services, brief: Brief, base_dir: Path | None,
                 team: str) -> _CheckedFiles:
    """Every file the brief names (first frames, brand kit logo and font) checked before
    anything is stored: a file given with the brief (a verified image or font), an
    `inputs/<team>/...` key of this team's own uploads, or an s3:// URI under an allowed
    prefix."""
    checked = _CheckedFiles([], [], {})
    for where, ref in _references(brief):
        if ref.startswith("s3://"):
            problems, data = _s3_file(services, ref, where)
        elif ref.startswith("inputs/"):
            problems, data = _team_input(services, ref, where, team)
        else:
            problems, data = _given_file(services, base_dir, ref, where, checked)
        checked.problems += problems
        if data is not None:
            checked.contents[where] = data
    return checked


def _given_file(services: Services, base_dir: Path | None, ref: str, where: str,
                checked: _CheckedFiles) -> tuple[list[tuple[str, str]], bytes | None]:
    folder = base_dir or Path.cwd()
    path = folder / ref
    name = PurePath(ref).name or ref  # '.' names no file: say what was written
    if not path.is_file():
        if name != ref and (folder / name).is_file():
            # The service's uploads have plain file names: a brief written for files in a
            # sub-folder beside it names them by their paths.
            return [(where, f"no file {ref!r} was given with the brief, but {name!r} was: "
                            f"name it {name!r} in the brief")], None
        return [(where, f"no file {name!r} was given with the brief")], None
    # not read when it is too large: a video or a disk image named by mistake would be read
    # whole into memory before the check refused it
    if (size := path.stat().st_size) > (limit := _size_limit(services, where)):
        return [(where, f"{name}: the file is {size:,} bytes; the limit is {limit:,}")], None
    data = path.read_bytes()
    try:
        suffix = _verifier(services, where)(data)
    except (ImageRejected, FontRejected) as err:
        return [(where, f"{name}: {err}")], None
    checked.uploads.append(_Upload(where, data, suffix))
    return [], data


def _drawing_problems(brief: Brief, contents: dict[str, bytes]) -> list[tuple[str, str]]:
    """The burned-in text drawn as it will be (`text_problems`: glyphs, safe zones) and the
    brand kit's end cards composed with its verified logo and font (`end_card_problems`)."""
    with tempfile.TemporaryDirectory() as tmp:
        font = None
        if "brand_kit.font" in contents:
            font = Path(tmp) / "font"
            font.write_bytes(contents["brand_kit.font"])
        problems = text_problems(brief, font)
        if brief.brand_kit is None or "brand_kit.logo" not in contents or any(
                field.startswith("brand_kit") for field, _ in problems):
            return problems
        logo = decode_picture(contents["brand_kit.logo"], keep_alpha=True)
        return problems + end_card_problems(brief, logo, font)


def _with_uploads(brief: Brief, keys: dict[str, str]) -> Brief:
    """The brief with each uploaded file's reference replaced by its stored key."""
    scenes = [scene.model_copy(update={"first_frame": keys[f"scenes[{index}].first_frame"]})
              if f"scenes[{index}].first_frame" in keys else scene
              for index, scene in enumerate(brief.scenes)]
    kit = brief.brand_kit
    if kit is not None:
        kit = kit.model_copy(update={name: keys[f"brand_kit.{name}"] for name in ("logo", "font")
                                     if f"brand_kit.{name}" in keys})
    return brief.model_copy(update={"scenes": scenes, "brand_kit": kit})


def _caption_problems(brief: Brief) -> list[tuple[str, str]]:
    """Each language's lines must fit its scene as captions, CUE_MIN_S per cue (one cue fits
    any scene): past that, the last cues were dropped from the spot without a word."""
    problems = []
    for index, scene in enumerate(brief.scenes):
        fits = max(1, math.floor(scene.duration_s / CUE_MIN_S + 1e-9))
        for locale, lines in scene.dialogue.items():
            count = cue_count([line.text for line in lines])
            if count > fits:
                problems.append((f"scenes[{index}].dialogue.{locale}",
                                 f"{count} caption cues (two lines of about "
                                 f"{LATIN_CHARS_PER_LINE} characters each) need "
                                 f"{count * CUE_MIN_S:g} s on screen; a {scene.duration_s:g} s "
                                 f"scene shows {fits}: shorten the lines or lengthen the scene"))
    return problems


def brief_cost(brief: Brief, settings: Settings) -> CostEstimate:
    """What the brief will cost under `settings` (its render profile's GPU-seconds per step),
    as estimated at submission. The plan is made with a placeholder checkpoint: counts and
    steps do not depend on it."""
    profile = RENDER_PROFILES[settings.mova_render_profile]
    # Counts and steps depend on neither the checkpoint, the first frames' content nor the
    # LoRAs' files.
    placeholder = {s.first_frame: "0" * 64 for s in brief.scenes if s.first_frame is not None}
    plan = plan_variants(brief, "0" * 64, profile, "estimate", placeholder,
                         {name: "0" * 64 for _, name in brief.lora_uses()})
    return estimate_cost(plan, settings.gpu_seconds_per_step(profile.name))


def _check_size(services: Services, brief: Brief) -> tuple[CostEstimate, list[tuple[str, str]]]:
    """The plan's cost and the per-brief caps (variants, renders)."""
    settings = services.settings
    cost = brief_cost(brief, settings)
    problems = []
    if cost.variants > settings.max_variants_per_brief:
        problems.append(("(brief)", f"{cost.variants} variants (scenes x locales x aspects); "
                                    f"a brief may have at most {settings.max_variants_per_brief}"
                                    " (MAX_VARIANTS_PER_BRIEF)"))
    if cost.renders > settings.max_renders_per_brief:
        problems.append(("(brief)", f"{cost.renders} renders; a brief may need at most "
                                    f"{settings.max_renders_per_brief} (MAX_RENDERS_PER_BRIEF)"))
    return cost, problems


def _count_invalid(services: Services, team: str | None) -> None:
    """An invalid brief counts toward the team's per-minute limit too (a client retrying a
    broken brief in a loop is refused like any other flood)."""
    if team is None:
        return
    with session_scope(services.engine) as session:
        repo.lock_team(session, team)
        _check_rate(services, session, team)
        repo.record_submission(session, team, None)


def _check_rate(services: Services, session: Session, team: str) -> None:
    limit = services.settings.api_submissions_per_minute
    recent = repo.count_submissions(session, team, SUBMIT_WINDOW)
    if recent >= limit:
        raise SubmissionRefused(f"team {team} submitted {recent} briefs in the last minute "
                                f"(limit {limit}); try again in a minute")


def submit(services: Services, raw: bytes | str, *, fmt: str | None = None,
           base_dir: Path | None = None, team: str | None = None,
           requires_approval: bool | None = None,
           idempotency_key: str | None = None) -> Submitted:
    """Validate a brief, check its inputs and its size, and queue it, or return the team's
    earlier identical brief. BriefInvalid (stores nothing, counts toward the rate limit),
    SubmissionRefused (rate limit or daily GPU budget; stores nothing), IdempotencyConflict
    (the key names another brief).

    The limits and the insert are one transaction that starts by locking the team (see
    `repo.lock_team`), so parallel submissions cannot all pass a check made before any of
    them is stored. The uploads are stored inside it, after every check: their keys come
    from their content, so the stored brief is known before they are written."""
    owner = team or NO_TEAM
    settings = services.settings
    try:
        brief = load_brief(raw, fmt=fmt)
        if requires_approval is not None:
            brief = brief.model_copy(update={"requires_approval": requires_approval})
        files = _check_files(services, brief, base_dir, owner)
        uploads, problems = files.uploads, files.problems
        cost, too_big = _check_size(services, brief)
        if not problems and not too_big:  # drawing costs time in proportion to the variants
            problems = _drawing_problems(brief, files.contents)
        problems += _caption_problems(brief)
        with session_scope(services.engine) as session:
            _, unknown_loras = resolve_loras(session, owner, brief)
        if team is not None and cost.gpu_seconds > settings.team_gpu_seconds_per_day:
            too_big.append(("(brief)", f"needs {gpu_seconds(cost.gpu_seconds)} GPU-seconds, "
                                       "more than a team's whole daily budget of "
                                       f"{gpu_seconds(settings.team_gpu_seconds_per_day)} "
                                       "(TEAM_GPU_SECONDS_PER_DAY)"))
        if problems or unknown_loras or too_big:
            raise BriefInvalid(problems + unknown_loras + too_big)
    except BriefInvalid:
        _count_invalid(services, team)
        raise
    keys = {upload.field: input_key(owner, sha256_bytes(upload.data), upload.suffix)
            for upload in uploads}
    brief = _with_uploads(brief, keys)
    canonical = brief.model_dump_json(indent=2)
    sha = sha256_bytes(canonical.encode())
    with session_scope(services.engine) as session:
        if team is not None:
            repo.lock_team(session, team)
        existing = repo.duplicate_brief(session, team, sha, idempotency_key)
        if existing is not None:
            if existing.sha256 != sha:
                raise IdempotencyConflict(
                    f"Idempotency-Key {idempotency_key!r} was used for brief {existing.id} "
                    "with other content; send a new brief with a new key")
            return Submitted(existing.id, False, cost)
        if team is not None:
            _check_rate(services, session, team)
            _check_budget(services, session, team, cost)
        for upload in uploads:
            services.store.put_bytes(upload.data, keys[upload.field],
                                     content_type=mimetypes.guess_type(f"x{upload.suffix}")[0])
        row = repo.add_brief(session, campaign_slug=brief.campaign, brand=brief.brand,
                             raw=canonical, sha256=sha, team=team,
                             idempotency_key=idempotency_key, gpu_seconds_estimate=cost.gpu_seconds)
        if team is not None:
            repo.record_submission(session, team, row)
        return Submitted(row.id, True, cost)


def gpu_seconds(value: float) -> str:
    """GPU-seconds as the team reads them: a tenth is the smallest step a brief costs here, so
    rounding to whole seconds could show a refusal as `0 of 1 used, needs 1 more`."""
    return f"{value:,.1f}"


def _check_budget(services: Services, session: Session, team: str, cost: CostEstimate) -> None:
    now = datetime.now(UTC)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    used = repo.team_gpu_seconds_since(session, team, today)
    quota = services.settings.team_gpu_seconds_per_day
    if used + cost.gpu_seconds > quota:
        midnight = today + timedelta(days=1)
        raise SubmissionRefused(
            f"team {team} has used {gpu_seconds(used)} of its {gpu_seconds(quota)} GPU-seconds "
            f"today; this brief needs {gpu_seconds(cost.gpu_seconds)} (TEAM_GPU_SECONDS_PER_DAY; "
            "the budget starts again at 00:00 UTC)",
            retry_after_s=math.ceil((midnight - now).total_seconds()))


def submit_brief(services: Services, raw: bytes | str, *, fmt: str | None = None,
                 base_dir: Path | None = None, team: str | None = None,
                 requires_approval: bool | None = None) -> UUID:
    """`submit`, for callers that only need the id (the CLI, tests)."""
    return submit(services, raw, fmt=fmt, base_dir=base_dir, team=team,
                  requires_approval=requires_approval).brief_id

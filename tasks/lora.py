"""Registered LoRAs in production (issue 11): register a folder, resolve a brief's names, and
apply the right one inside a render actor.

A LoRA is registered once per team under a name (`mova-ads lora add NAME FOLDER`): its files
(the §13.3 folder: weights and optional config) are copied to `loras/<team>/<name>/<digest>/`
and the name, digest and file list recorded. The digest covers every file's name and SHA-256,
so the config's alpha/rank are part of a LoRA's identity like its weights. A name keeps its
files forever: plans made with it stay reproducible.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from infra import repository as repo
from infra.db import session_scope
from infra.hashing import sha256_file
from infra.storage import ObjectStore
from schemas.brief import SLUG_PATTERN, Brief
from schemas.errors import NotFound, PipelineError
from schemas.plan import LoraSpec
from tasks.services import Services

log = logging.getLogger(__name__)

LORA_CONTENT_TYPE = "application/octet-stream"
# Registration loads a LoRA's tensors to check them. A rank-64 LoRA of every linear layer of
# the 720p release is ~1 GB in bf16, ~2 GB in fp32; a file far over that is no LoRA (a
# checkpoint put in the folder by mistake) and would have been copied and loaded first.
MAX_LORA_FILE_BYTES = 4 * 2**30


class LoraRejected(PipelineError):
    """A LoRA cannot be registered: bad name, unreadable folder, or the name is taken."""


@dataclass(frozen=True)
class RegisteredLora:
    name: str
    team: str
    sha256: str
    files: dict[str, Any]
    created: bool  # False: the same files were registered under this name before


def lora_files(folder: Path) -> dict[str, Path]:
    """The §13.3 files of a LoRA folder, by name (weights, and the config when present)."""
    from mova_model.lora import CONFIG_PT, WEIGHTS_PT, WEIGHTS_SAFETENSORS

    return {name: folder / name for name in (WEIGHTS_PT, WEIGHTS_SAFETENSORS, CONFIG_PT)
            if (folder / name).is_file()}


def files_digest(files: dict[str, Any]) -> str:
    """SHA-256 over `<name> <sha256>` lines of every file, sorted by name."""
    lines = "".join(f"{name} {files[name]['sha256']}\n" for name in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def register_lora(services: Services, team: str, name: str, folder: Path) -> RegisteredLora:
    """Check the folder parses as a LoRA (format and keys, and its shapes against the configured
    checkpoint when this host has it), copy its files to storage and record it."""
    from mova_model.lora import WEIGHTS_PT, WEIGHTS_SAFETENSORS, LoraError, read_lora

    # fullmatch: `$` in the pattern also matches before a trailing newline, a name no brief
    # could ever give
    if not re.fullmatch(SLUG_PATTERN, name):
        raise LoraRejected(f"LoRA name {name!r} must be a slug: lower-case letters, digits and "
                           "dashes, at most 63 characters")
    if team != repo.NO_TEAM:
        with session_scope(services.engine) as session:
            try:
                repo.team_by_name(session, team)
            except NotFound as err:
                raise LoraRejected(f"{err}: create it first (mova-ads team create)") from err
    on_disk = lora_files(folder)
    if WEIGHTS_PT in on_disk and WEIGHTS_SAFETENSORS in on_disk:
        # renders read only the .pt: the other file was stored, unchecked, under the name
        raise LoraRejected(f"{folder}: holds both {WEIGHTS_PT} and {WEIGHTS_SAFETENSORS}; "
                           "keep the one to register")
    for path in on_disk.values():
        if (size := path.stat().st_size) > MAX_LORA_FILE_BYTES:  # refused before it is read
            limit = MAX_LORA_FILE_BYTES // 2**30
            raise LoraRejected(f"{path} is {size / 2**30:.1f} GiB, over the {limit} GiB a LoRA "
                               "file may be (a whole checkpoint?)")
    # Copied once, to a private folder: the files checked are the files stored (one swapped in
    # the folder between a check and an upload would be stored unchecked). Copied and hashed
    # in chunks, never held in memory whole (a real LoRA is hundreds of MB).
    with tempfile.TemporaryDirectory(prefix="lora-add-") as tmp:
        copies = {file_name: Path(shutil.copyfile(path, Path(tmp) / file_name))
                  for file_name, path in on_disk.items()}
        try:
            read_lora(Path(tmp))
        except LoraError as err:
            raise LoraRejected(str(err).replace(tmp, str(folder))) from err
        _check_fits_configured_checkpoint(services, Path(tmp), folder)
        files = {file_name: {"sha256": sha256_file(copy), "size_bytes": copy.stat().st_size}
                 for file_name, copy in copies.items()}
        digest = files_digest(files)
        try:
            created = _store_lora(services, team, name, digest, files, copies)
        except IntegrityError:  # the same name registered at this moment by another `lora add`
            created = _store_lora(services, team, name, digest, files, copies)
    if not created:
        return RegisteredLora(name, team, digest, files, False)
    log.info("lora.registered team=%s name=%s sha256=%s", team, name, digest)
    return RegisteredLora(name, team, digest, files, True)


def _store_lora(services: Services, team: str, name: str, digest: str,
                files: dict[str, Any], copies: dict[str, Path]) -> bool:
    """Copy the files to storage and record the name; False when the name already holds
    these files, LoraRejected when it holds others."""
    with session_scope(services.engine) as session:
        existing = repo.team_lora(session, team, name)
        if existing is not None:
            if existing.sha256 != digest:
                raise LoraRejected(f"LoRA {name!r} of team {team} is registered with other files "
                                   f"(sha256 {existing.sha256[:12]}); register these under a "
                                   "new name")
            return False
        prefix = f"loras/{team}/{name}/{digest}/"
        for file_name, copy in copies.items():
            services.store.put_file(copy, prefix + file_name, content_type=LORA_CONTENT_TYPE)
        repo.add_lora(session, team=team, name=name, sha256=digest, files_prefix=prefix,
                      files=files)
    return True


def resolve_loras(session: Session, team: str, brief: Brief
                  ) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """name -> digest of every LoRA the brief names, and a problem (with its path in the brief)
    for each name the team has not registered."""
    known: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for path, name in brief.lora_uses():
        row = repo.team_lora(session, team, name)
        if row is None:
            problems.append((path, f"no LoRA named {name!r} is registered for team {team} "
                                   "(mova-ads lora add NAME FOLDER)"))
        else:
            known[name] = row.sha256
    return known, problems


def _check_fits_configured_checkpoint(services: Services, folder: Path, shown: Path) -> None:
    """A LoRA made for another model size is refused when it is registered, where this host
    has the checkpoint its renders use (planning checks again: the checkpoint may change)."""
    from mova_model.lora import LoraError
    from mova_model.pipeline import check_lora_fits

    checkpoint = services.settings.checkpoint
    if not (checkpoint / "model_index.json").is_file():
        return
    try:
        check_lora_fits(folder, checkpoint)
    except LoraError as err:
        raise LoraRejected(f"does not fit checkpoint {checkpoint} (MOVA_CHECKPOINT): "
                           f"{str(err).replace(str(folder), str(shown))}") from err


def lora_misfits(store: ObjectStore, brief: Brief, loras: dict[str, str], checkpoint: Path,
                 cache_dir: Path) -> list[tuple[str, str]]:
    """A problem (with its path in the brief) for each use of a registered LoRA this checkpoint
    cannot take: made for another model size, naming modules it lacks, or gone from storage.
    Checked when the brief is planned, so the brief is refused instead of every render."""
    from mova_model.lora import LoraError
    from mova_model.pipeline import check_lora_fits

    refused: dict[str, str] = {}
    for name, digest in loras.items():
        try:
            check_lora_fits(fetch_lora(store, LoraSpec(name=name, sha256=digest, scale=1.0),
                                       cache_dir), checkpoint)
        except (LoraError, LoraRejected) as err:
            refused[name] = str(err)
    return [(path, f"LoRA {name!r} cannot be applied to checkpoint {checkpoint.name}: "
                   f"{refused[name]}") for path, name in brief.lora_uses() if name in refused]


# ---- inside the render actor ------------------------------------------------------------------


def fetch_lora(store: ObjectStore, lora: LoraSpec, cache_dir: Path) -> Path:
    """The LoRA's folder on this host (downloaded once per digest), checked against its digest.
    Files are found by digest alone: the storage key carries the team, the spec does not."""
    folder = cache_dir / lora.sha256
    if folder.is_dir():
        if _folder_digest(folder) == lora.sha256:
            return folder
        # A damaged copy (a file deleted or changed on this host) failed every render here:
        # set it aside and fetch again.
        try:
            damaged = folder.rename(cache_dir / f".{lora.sha256}.damaged.{uuid4().hex}")
        except OSError:  # another actor set it aside first
            pass
        else:
            shutil.rmtree(damaged, ignore_errors=True)
    keys = [k for k in store.list("loras/") if k.split("/")[-2:-1] == [lora.sha256]]
    if not keys:
        raise LoraRejected(f"LoRA {lora.name!r} (sha256 {lora.sha256[:12]}) has no files in "
                           "storage")
    # Actors on one host share the cache: each downloads into its own folder, the first
    # complete one is renamed into place.
    staging = cache_dir / f".{lora.sha256}.{uuid4().hex}"
    staging.mkdir(parents=True)
    files = {}
    for key in keys:
        path = store.get_file(key, staging / key.rsplit("/", 1)[-1])
        files[path.name] = {"sha256": sha256_file(path)}
    if files_digest(files) != lora.sha256:
        shutil.rmtree(staging, ignore_errors=True)
        raise LoraRejected(f"LoRA {lora.name!r}: the stored files do not match sha256 "
                           f"{lora.sha256[:12]}")
    try:
        staging.rename(folder)
    except OSError:  # another actor finished first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _folder_digest(folder: Path) -> str:
    """`files_digest` of the files in a fetched LoRA folder."""
    return files_digest({path.name: {"sha256": sha256_file(path)}
                         for path in folder.iterdir() if path.is_file()})


def apply_lora(pipeline: Any, lora: LoraSpec | None, store: ObjectStore, cache_dir: Path,
               loaded: str | None) -> str | None:
    """Put the pipeline in the state a render asks for: no LoRA, or this one at this scale.
    `loaded` is the digest the pipeline holds now; returns the one it holds after. A LoRA
    already held is kept (only its scale is set): loading happens once per actor and LoRA."""
    if lora is None:
        pipeline.unload_lora()
        return None
    if loaded != lora.sha256 or pipeline.lora is None:
        pipeline.load_lora(fetch_lora(store, lora, cache_dir), scale=lora.scale)
        log.info("lora.loaded name=%s sha256=%s", lora.name, lora.sha256[:12])
    elif pipeline.lora.scale != lora.scale:
        pipeline.set_lora_scale(lora.scale)
    return lora.sha256

"""The production plan: every scene × language × aspect variant and the renders behind them.

`plan_variants` is pure: the same brief, profile and checkpoint give the same plan, seeds and
keys, which is what makes reruns find their earlier work instead of redoing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, model_validator

# The one exception to "schemas imports no mova_model": the render request is defined once, in a
# standard-library-only module, so the plan validates it without importing torch.
from mova_model.request import RELEASE_NEGATIVE_PROMPT, GenerationRequest, GuidanceMode
from mova_model.request import RenderMode as RenderMode  # re-exported: tasks import it from here
from schemas.brief import Aspect, Brief, DubbingStrategy, Scene
from schemas.spot import render_order

VIDEO_FPS = 24.0
MAX_FRAMES = 193


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Orientation(StrEnum):
    LANDSCAPE = "landscape"
    PORTRAIT = "portrait"


# The render whose orientation is closest: 16:9 and 1:1 crop from landscape, 9:16 from portrait.
ORIENTATION_FOR_ASPECT = {
    Aspect.LANDSCAPE: Orientation.LANDSCAPE,
    Aspect.SQUARE: Orientation.LANDSCAPE,
    Aspect.PORTRAIT: Orientation.PORTRAIT,
}


class RenderProfile(Frozen):
    """Model render settings (sizes are for landscape; portrait swaps them)."""

    name: str
    height: int
    width: int
    steps: int = Field(ge=1)
    cfg_scale: float = Field(default=5.0, gt=0)
    # the audio tower's own scale (None: cfg_scale for both, as the release)
    audio_cfg_scale: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    guidance_mode: GuidanceMode = GuidanceMode.REFERENCE
    bridge_scale: float = 1.0
    negative_prompt: str = RELEASE_NEGATIVE_PROMPT

    def size(self, orientation: Orientation) -> tuple[int, int]:
        """(height, width) of a render in this orientation."""
        if orientation is Orientation.PORTRAIT:
            return self.width, self.height
        return self.height, self.width


RENDER_PROFILES = {
    "tiny": RenderProfile(name="tiny", height=64, width=112, steps=8),
    # The demo model (assets/demo-model) at the size it was trained on. It learnt the empty
    # prompt as its unconditional branch (the release's Chinese negative prompt is outside its
    # vocabulary), and bench/content.py measures it with these settings: its sound guided at
    # 1.5 counts syllables right far more often than at the picture's scale (bench/README.md).
    "demo": RenderProfile(name="demo", height=64, width=112, steps=20, cfg_scale=3.5,
                          audio_cfg_scale=1.5, negative_prompt=""),
    "360p": RenderProfile(name="360p", height=352, width=640, steps=50),
    "720p": RenderProfile(name="720p", height=720, width=1280, steps=50),
}


def _to_request(value: Any) -> GenerationRequest:
    if isinstance(value, GenerationRequest):
        return value
    if isinstance(value, Mapping):
        return GenerationRequest.from_dict(value)  # InvalidRequest is a ValueError
    raise ValueError(f"request must be a GenerationRequest or a mapping, not "
                     f"{type(value).__name__}")


# Validated by GenerationRequest itself (its __post_init__), stored as its plain dict.
RequestField = Annotated[
    GenerationRequest,
    PlainValidator(_to_request),
    PlainSerializer(lambda request: request.to_dict(), return_type=dict),
]


class LoraSpec(Frozen):
    """The registered LoRA a render applies: its name, the digest of its files, the scale."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scale: float


# Where a render sits in the plan and where its first frame is read from: kept with the spec for
# people and workers, left out of the key (they do not change what the model computes).
PLACEMENT_FIELDS = frozenset({"scene_id", "orientation", "first_frame"})

# The flat layout stored before the GenerationRequest was nested in the spec (commit a6a6627):
# old field name -> request field.
_FLAT_REQUEST_FIELDS = {
    "prompt": "prompt", "negative_prompt": "negative_prompt", "height": "height",
    "width": "width", "num_frames": "num_frames", "video_fps": "video_fps",
    "steps": "num_inference_steps", "cfg_scale": "cfg_scale", "guidance_mode": "guidance_mode",
    "bridge_scale": "bridge_scale", "seed": "seed", "mode": "mode",
}


class RenderSpec(Frozen):
    """One model render: the request the model runs as is, its inputs, and where it sits in the
    plan. `key` identifies its output and hashes exactly what enters the model, so every
    variant (language, aspect) that needs the same render shares one."""

    scene_id: str  # the scene it renders (placement only)
    orientation: Orientation  # placement only: the size is in the request
    first_frame: str | None = None  # where the first-frame image is read (placement only)
    first_frame_sha256: str | None = None  # that image's content: what the model sees
    # Continuity: the render whose last frame is this render's first frame. Its key stands for
    # that frame's content (a key has exactly one stored clip), so it is known at plan time.
    continue_from: str | None = None
    request: RequestField
    master_key: str | None = None  # audio-only: the render whose picture is kept
    checkpoint: str  # fingerprint of the model folder
    lora: LoraSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_stored_layouts(cls, data: Any) -> Any:
        """Specs stored by earlier versions load as they are: the flat layout (request fields
        at the top, `steps` for num_inference_steps) and both earlier layouts' `locale`, which
        never entered the model. Their rows keep the keys they were stored under."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        data.pop("locale", None)
        if "request" not in data and "prompt" in data:
            data["request"] = {new: data.pop(old) for old, new in _FLAT_REQUEST_FIELDS.items()
                               if old in data}
        return data

    @model_validator(mode="after")
    def _inputs_agree(self) -> RenderSpec:
        if (self.request.mode is RenderMode.AUDIO_ONLY) != (self.master_key is not None):
            raise ValueError(f"mode={self.request.mode.value} with master_key="
                             f"{self.master_key!r}: an audio-only render needs the key of the "
                             "render whose picture it keeps, a joint render has none")
        if self.first_frame_sha256 is not None and self.first_frame is None:
            raise ValueError("first_frame_sha256 without the first_frame it is the hash of")
        if self.continue_from is not None and (self.first_frame is not None
                                               or self.master_key is not None):
            raise ValueError("a continued render starts from its predecessor's last frame; it "
                             "has no first_frame image and is not an audio-only dub")
        return self

    @property
    def key(self) -> str:
        """sha256 of what enters the model: the request, the first frame's content (or the
        render it continues), the master picture of a dub, the checkpoint, and any further
        model input added to the spec. Unset inputs are left out, so adding an optional input
        keeps the keys of renders that do not use it."""
        spec = self.model_dump(mode="json")
        inputs = {name: value for name, value in spec.items()
                  if name not in PLACEMENT_FIELDS and value is not None}
        if self.first_frame is not None and self.first_frame_sha256 is None:
            inputs["first_frame"] = self.first_frame  # a stored spec from before content hashes
        canonical = json.dumps(inputs, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    # Read-only views used across tasks; the request stays the one definition.
    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def mode(self) -> RenderMode:
        return self.request.mode

    @property
    def height(self) -> int:
        return self.request.height

    @property
    def width(self) -> int:
        return self.request.width

    @property
    def num_frames(self) -> int:
        return self.request.num_frames

    @property
    def picture_key(self) -> str:
        """The render whose picture this render's clip shows: its master for an audio-only
        dub, else itself. A scene continued from this one starts from that picture."""
        return self.master_key or self.key

    def with_seed(self, seed: int) -> RenderSpec:
        """The same render with another seed (validated again)."""
        return self.model_copy(update={"request": dataclasses.replace(self.request, seed=seed)})

    def continuing(self, key: str) -> RenderSpec:
        """The same render started from the last frame of render `key` instead."""
        return RenderSpec.model_validate({**self.model_dump(mode="json"), "continue_from": key})


class VariantSpec(Frozen):
    """One deliverable: a scene in a language at an aspect ratio, finished from one render."""

    scene_id: str
    locale: str
    aspect: Aspect
    duration_s: float
    render_key: str

    @property
    def name(self) -> str:
        return f"{self.scene_id}/{self.locale}/{self.aspect.value}"


class CostEstimate(Frozen):
    """What a plan costs before it runs: every render takes its sampling steps at the profile's
    seconds per step (the cost model in settings). Decoding, finishing and QC are left out:
    they run on CPUs and are small beside the sampler."""

    renders: int
    variants: int
    steps: int = Field(description="Sampling steps of all renders together.")
    seconds_per_step: float
    gpu_seconds: float


class Plan(Frozen):
    brief_sha256: str
    renders: list[RenderSpec]
    variants: list[VariantSpec]
    cost: CostEstimate | None = None

    def render(self, key: str) -> RenderSpec:
        return next(r for r in self.renders if r.key == key)


def frames_for_duration(duration_s: float, fps: float = VIDEO_FPS) -> int:
    """The nearest 4k+1 frame count (at least 5, at most one clip) for a duration."""
    k = max(1, round((duration_s * fps - 1) / 4))
    return min(4 * k + 1, MAX_FRAMES)


def stable_seed(*parts: object) -> int:
    """A seed from a stable hash (not Python's salted hash()), in [0, 2**31)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def build_prompt(brief: Brief, scene: Scene, locale: str) -> str:
    """The model prompt: picture, sound, then speech in quotes (`<speaker> says: "<line>"`)."""
    parts = [scene.visual.rstrip(".") + "."]
    parts.append(f"The ad is for {brief.brand} {brief.product}.")
    if scene.ambience:
        parts.append(f"Sound: {scene.ambience.rstrip('.')}.")
    for line in scene.dialogue.get(locale, []):
        parts.append(f'{line.speaker} says: "{line.text}"')
    return " ".join(parts)


def _request(profile: RenderProfile, prompt: str, mode: RenderMode,
             size: tuple[int, int, int], seed: int) -> GenerationRequest:
    """The render request of one spec; raises InvalidRequest for sizes the model cannot do."""
    height, width, frames = size
    return GenerationRequest(
        prompt, negative_prompt=profile.negative_prompt, height=height, width=width,
        num_frames=frames, video_fps=VIDEO_FPS, num_inference_steps=profile.steps,
        cfg_scale=profile.cfg_scale, guidance_mode=profile.guidance_mode,
        bridge_scale=profile.bridge_scale, seed=seed, mode=mode,
        audio_cfg_scale=profile.audio_cfg_scale,
    )


def plan_variants(brief: Brief, brief_sha256: str, profile: RenderProfile, checkpoint: str,
                  first_frames: Mapping[str, str] | None = None,
                  loras: Mapping[str, str] | None = None) -> Plan:
    """Every (scene, locale, aspect) variant, in a stable order, and the renders they need.
    `loras` maps each LoRA name the brief uses to the digest of its registered files.

    A render is keyed by what enters the model (see `RenderSpec.key`), so variants that need
    the same one share it: a scene without speech is rendered once per orientation for every
    language. lipsync: one joint render per (scene, orientation) and distinct prompt (each
    language's line), the same seed for every language so only the speech differs. voiceover:
    one joint master per (scene, orientation) in the first locale, then an audio-only render per
    language whose prompt differs from the master's. Scenes are planned in `render_order`: a
    scene with `continue_from` starts from the picture its predecessor shows in the same
    language and orientation. `first_frames` maps each first-frame reference of the brief to
    the sha256 of its content (what the model sees); a reference missing from it is an error.
    """
    shas = first_frames or {}
    scenes = {scene.scene_id: scene for scene in brief.scenes}
    renders: dict[str, RenderSpec] = {}
    variants: list[VariantSpec] = []
    picture: dict[tuple[str, str, Orientation], str] = {}  # (scene, locale, orientation) -> key
    for scene_id in render_order(brief):
        scene = scenes[scene_id]
        frames = frames_for_duration(scene.duration_s)
        first_sha = None
        if scene.first_frame is not None:
            if scene.first_frame not in shas:
                raise KeyError(f"no content hash for the first frame {scene.first_frame!r} of "
                               f"scene {scene_id!r}")
            first_sha = shas[scene.first_frame]
        for orientation in sorted({ORIENTATION_FOR_ASPECT[a] for a in brief.aspects}):
            height, width = profile.size(orientation)
            seed = stable_seed(brief.seed, scene_id, orientation.value)
            choice = brief.lora_for(scene)
            lora = None if choice is None else LoraSpec(
                name=choice.name, sha256=(loras or {})[choice.name], scale=choice.scale)
            size = (height, width, frames)
            master: RenderSpec | None = None
            for locale in brief.locales:
                prompt = build_prompt(brief, scene, locale)
                place = dict(scene_id=scene_id, orientation=orientation, checkpoint=checkpoint,
                             lora=lora)
                if brief.dubbing == DubbingStrategy.VOICEOVER and master is not None:
                    spec = master  # the master's own soundtrack serves a language it fits
                    if prompt != master.prompt:
                        request = _request(profile, prompt, RenderMode.AUDIO_ONLY, size, seed)
                        spec = RenderSpec(request=request, master_key=master.key,
                                          **place)  # type: ignore[arg-type]
                else:
                    request = _request(profile, prompt, RenderMode.JOINT, size, seed)
                    previous = (picture[(scene.continue_from, locale, orientation)]
                                if scene.continue_from is not None else None)
                    spec = RenderSpec(request=request, first_frame=scene.first_frame,
                                      first_frame_sha256=first_sha, continue_from=previous,
                                      **place)  # type: ignore[arg-type]
                    master = master or spec
                renders[spec.key] = spec
                picture[(scene_id, locale, orientation)] = spec.picture_key
                for aspect in brief.aspects:
                    if ORIENTATION_FOR_ASPECT[aspect] is orientation:
                        variants.append(VariantSpec(scene_id=scene_id, locale=locale,
                                                    aspect=aspect, duration_s=scene.duration_s,
                                                    render_key=spec.key))
    variants.sort(key=lambda v: (v.scene_id, v.locale, v.aspect.value))
    return Plan(brief_sha256=brief_sha256, renders=list(renders.values()), variants=variants)


def estimate_cost(plan: Plan, seconds_per_step: float) -> CostEstimate:
    """renders x steps x seconds per step, in GPU-seconds. An audio-only dub runs every step
    too (its picture is fixed, the audio tower still samples), so it is counted like a joint
    render: the estimate errs high, which is the safe side of a quota."""
    steps = sum(r.request.num_inference_steps for r in plan.renders)
    return CostEstimate(renders=len(plan.renders), variants=len(plan.variants), steps=steps,
                        seconds_per_step=seconds_per_step,
                        gpu_seconds=round(steps * seconds_per_step, 3))


def with_cost(plan: Plan, seconds_per_step: float) -> Plan:
    return plan.model_copy(update={"cost": estimate_cost(plan, seconds_per_step)})

"""LoRA adapters in the original's folder format (spec §13.3): read, check, attach, merge, detach.

A LoRA folder holds `lora_weights.pt` (a dict of tensors) or `lora_weights.safetensors` (same
keys), and optionally `lora_config.pt` (`rank`, `alpha`, `target_modules`). Keys are
`<component>.<module path>.lora_{A,B}.weight` (peft) or `.lora_{A,B}.default.weight` (diffsynth).

The adapter never replaces modules (state-dict keys, offload hooks and checkpoint fingerprints stay
as they are): an unmerged LoRA is a forward hook on each base `nn.Linear` adding
`(B (A x)) * scaling`; a merged one is written into the weight after a CPU copy of the base
weight was kept, so `detach` puts the original values back bit for bit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from mova_model.errors import InvalidRequest

WEIGHTS_PT = "lora_weights.pt"
WEIGHTS_SAFETENSORS = "lora_weights.safetensors"
CONFIG_PT = "lora_config.pt"
# The components the original injects LoRA into (and the key prefixes it writes).
LORA_COMPONENTS = ("video_dit", "video_dit_2", "audio_dit", "dual_tower_bridge")
# The original's defaults when lora_config.pt is absent; its trainer also always writes these.
DEFAULT_RANK, DEFAULT_ALPHA = 16, 16.0
# Linears the towers evaluate through F.linear in fp32 (dit.time_modulation) rather than by
# calling the module, so a hook there would be skipped; the original never targets them either.
_EXCLUDED_PREFIXES = ("time_embedding", "time_projection")
_SUFFIXES = {
    ".lora_A.weight": "A",
    ".lora_B.weight": "B",
    ".lora_A.default.weight": "A",
    ".lora_B.default.weight": "B",
}


class LoraError(InvalidRequest):
    """A LoRA folder or file cannot be applied to this pipeline as written."""


@dataclass(frozen=True)
class LoraConfig:
    """`lora_config.pt`: the rank and alpha every LoRA layer is built with."""

    rank: int = DEFAULT_RANK
    alpha: float = DEFAULT_ALPHA
    target_modules: tuple[str, ...] = ()

    @property
    def scaling(self) -> float:
        """alpha / rank from the config, whatever the stored factors' rank (spec §13.3)."""
        return self.alpha / self.rank


@dataclass(frozen=True)
class LoraFactors:
    """One layer's factors: A (rank, in) and B (out, rank), kept in their stored dtype."""

    a: Tensor
    b: Tensor


@dataclass
class LoraWeights:
    """A parsed LoRA: config, factors per component and module path, source file and digest."""

    config: LoraConfig
    factors: dict[str, dict[str, LoraFactors]]
    source: Path
    sha256: str

    @property
    def num_layers(self) -> int:
        return sum(len(layers) for layers in self.factors.values())


# ---- reading --------------------------------------------------------------------------------


def _torch_load(path: Path) -> Any:
    # A LoRA file is user input: weights_only refuses pickled code, not just unknown tensors.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        problem = _load_problem(err)
        raise LoraError(f"{path}: not a tensor-only torch file ({type(err).__name__}"
                        f"{': ' + problem if problem else ''})") from err


def _load_problem(err: Exception) -> str:
    """What torch found, in its first sentence, without its advice to load the file again with
    weights_only=False (running what it holds, which a LoRA from outside must never do) or to
    allow-list its classes."""
    text = str(err)
    if "WeightsUnpickler error:" in text:  # what it found follows the advice
        text = text.split("WeightsUnpickler error:", 1)[1]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return first.split(". ")[0].rstrip(".")


def read_lora_config(path: Path) -> LoraConfig:
    """`lora_config.pt` as a LoraConfig; defaults (16, 16.0) when the file is absent."""
    if not path.is_file():
        return LoraConfig()
    data = _torch_load(path)
    if not isinstance(data, dict):
        raise LoraError(f"{path}: expected a dict with rank and alpha, found {type(data).__name__}")
    rank, alpha = data.get("rank", DEFAULT_RANK), data.get("alpha", DEFAULT_ALPHA)
    # The release's non-FSDP saver writes a class name into "rank" (spec §11.10); its own
    # loader then fails building the layers, so this refuses it with the reason instead.
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise LoraError(f"{path}: rank={rank!r}; expected a positive integer")
    # NaN or inf made every frame NaN; 0 made the LoRA change nothing, silently.
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (
            math.isfinite(alpha) and alpha != 0):
        raise LoraError(f"{path}: alpha={alpha!r}; expected a finite, non-zero number")
    targets = data.get("target_modules") or []
    return LoraConfig(rank=rank, alpha=float(alpha), target_modules=tuple(map(str, targets)))


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise LoraError(f"{path}: no such LoRA folder or file")
    for name in (WEIGHTS_PT, WEIGHTS_SAFETENSORS):
        if (path / name).is_file():
            return path / name
    raise LoraError(f"{path}: expected {WEIGHTS_PT} or {WEIGHTS_SAFETENSORS} in the folder")


def _read_tensors(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(path, device="cpu")
        except (SafetensorError, OSError) as err:
            raise LoraError(f"{path}: unreadable safetensors file ({err})") from err
    data = _torch_load(path)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()
    ):
        raise LoraError(f"{path}: expected a dict of name -> tensor")
    return data


def _split_key(key: str) -> tuple[str, str, str]:
    """'video_dit.blocks.0.q.lora_A.weight' -> ('video_dit', 'blocks.0.q', 'A')."""
    for suffix, factor in _SUFFIXES.items():
        if key.endswith(suffix):
            component, _, module_path = key[: -len(suffix)].partition(".")
            if component not in LORA_COMPONENTS or not module_path:
                raise LoraError(f"LoRA key {key!r}: expected <component>.<module path>{suffix} "
                                f"with component one of {', '.join(LORA_COMPONENTS)}")
            return component, module_path, factor
    raise LoraError(f"LoRA key {key!r}: expected it to end in .lora_A.weight / .lora_B.weight "
                    "(peft) or .lora_A.default.weight / .lora_B.default.weight (diffsynth)")


def read_lora(path: str | Path) -> LoraWeights:
    """Parse a LoRA folder (or a weights file with an optional lora_config.pt beside it)."""
    weights_path = _weights_file(Path(path))
    config = read_lora_config(weights_path.parent / CONFIG_PT)
    tensors = _read_tensors(weights_path)
    if not tensors:
        raise LoraError(f"{weights_path}: holds no LoRA tensors")
    pairs: dict[tuple[str, str], dict[str, tuple[str, Tensor]]] = {}
    for key, value in tensors.items():
        component, module_path, factor = _split_key(key)
        slot = pairs.setdefault((component, module_path), {})
        if factor in slot:
            raise LoraError(f"LoRA key {key!r}: lora_{factor} given twice for {module_path} "
                            f"(also as {slot[factor][0]!r})")
        slot[factor] = (key, value)
    factors: dict[str, dict[str, LoraFactors]] = {}
    for (component, module_path), slot in sorted(pairs.items()):
        if set(slot) != {"A", "B"}:
            (key, _), = slot.values()
            missing = "B" if "A" in slot else "A"
            raise LoraError(f"LoRA key {key!r}: its lora_{missing} partner is missing")
        (key_a, a), (key_b, b) = slot["A"], slot["B"]
        # sparse or meta tensors loaded fine and then failed the render mid-way
        if any(t.layout != torch.strided or t.is_meta for t in (a, b)):
            raise LoraError(f"LoRA keys {key_a!r} / {key_b!r}: expected dense tensors with "
                            f"data; found {a.layout}/{b.layout} on {a.device}/{b.device}")
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or a.shape[0] == 0:
            raise LoraError(f"LoRA keys {key_a!r} / {key_b!r}: expected A (rank, in) and "
                            f"B (out, rank); found {tuple(a.shape)} and {tuple(b.shape)}")
        if not (a.is_floating_point() and b.is_floating_point()):
            raise LoraError(f"LoRA key {key_a!r}: factors must be floating point, found "
                            f"{a.dtype} / {b.dtype}")
        if not all(torch.isfinite(t.float()).all() for t in (a, b)):  # float8 has no isfinite
            raise LoraError(f"LoRA keys {key_a!r} / {key_b!r}: hold NaN or inf values (every "
                            "frame rendered with them would be NaN)")
        factors.setdefault(component, {})[module_path] = LoraFactors(a, b)
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    return LoraWeights(config=config, factors=factors, source=weights_path, sha256=digest)


# ---- checking against the model ---------------------------------------------------------------


def check_lora(weights: LoraWeights, components: dict[str, nn.Module]) -> None:
    """Every key must name an existing nn.Linear of a loaded component, with matching shapes."""
    for component, layers in weights.factors.items():
        module = components.get(component)
        if module is None:
            raise LoraError(f"{weights.source}: LoRA for component {component!r}, which this "
                            "pipeline does not have")
        linears = dict(module.named_modules())
        for module_path, f in layers.items():
            key = f"{component}.{module_path}.lora_A.weight"
            target = linears.get(module_path)
            if not isinstance(target, nn.Linear):
                found = "nothing" if target is None else type(target).__name__
                raise LoraError(f"LoRA key {key!r}: {component} has {found} at {module_path!r}; "
                                "expected an nn.Linear")
            if module_path.split(".")[0] in _EXCLUDED_PREFIXES:
                raise LoraError(f"LoRA key {key!r}: the time embedding linears take no LoRA "
                                "(the original excludes them)")
            expected_a = (f.a.shape[0], target.in_features)
            expected_b = (target.out_features, f.b.shape[1])
            if tuple(f.a.shape) != expected_a or tuple(f.b.shape) != expected_b:
                raise LoraError(
                    f"LoRA key {key!r}: {module_path} is Linear({target.in_features}, "
                    f"{target.out_features}); expected A {expected_a} and B {expected_b}, found "
                    f"{tuple(f.a.shape)} and {tuple(f.b.shape)}"
                )


# ---- attaching --------------------------------------------------------------------------------


def lora_delta(x: Tensor, f: LoraFactors, scaling: float, out_dtype: torch.dtype) -> Tensor:
    """(B (A x)) * scaling: A and B in their own dtype, cast back before the scaling (original)."""
    a, b = f.a.to(x.device), f.b.to(x.device)  # no-op unless offloading moved the layer
    low_rank = torch.nn.functional.linear(torch.nn.functional.linear(x.to(a.dtype), a), b)
    return low_rank.to(out_dtype) * scaling


def merged_weight(weight: Tensor, f: LoraFactors, scaling: float) -> Tensor:
    """W + (B @ A) * scaling, computed in float32 and stored in W's dtype and device."""
    # The original adds in the factors' dtype and keeps the promoted result (an fp32 weight in a
    # bf16 model); this keeps the model's dtype so the merged model runs the same kernels.
    delta = (f.b.float() @ f.a.float()) * scaling
    return (weight.float() + delta.to(weight.device)).to(weight.dtype)


@dataclass
class AttachedLora:
    """A LoRA applied to a pipeline: hooks or merged weights per component, and the user scale."""

    weights: LoraWeights
    scale: float = 1.0
    merged: bool = False
    _hooks: dict[str, list[RemovableHandle]] = field(default_factory=dict)
    _originals: dict[str, dict[str, Tensor]] = field(default_factory=dict)

    @property
    def scaling(self) -> float:
        """alpha / rank from the config times the user's scale."""
        return self.weights.config.scaling * self.scale

    def components(self) -> Iterable[str]:
        return self.weights.factors.keys()

    def attach(self, component: str, module: nn.Module) -> None:
        """Apply to a freshly loaded (base) component: forward hooks, or merged weights."""
        layers = self.weights.factors.get(component, {})
        linears = dict(module.named_modules())
        if self.merged:
            self._originals[component] = {}
            with torch.no_grad():
                for module_path, f in layers.items():
                    linear = linears[module_path]
                    assert isinstance(linear, nn.Linear)
                    # Kept on the CPU: a GPU model does not pay twice for its LoRA'd layers.
                    self._originals[component][module_path] = linear.weight.data.to("cpu")
                    linear.weight.data = merged_weight(linear.weight.data, f, self.scaling)
            return
        self._hooks[component] = [
            linears[module_path].register_forward_hook(self._hook(f))
            for module_path, f in layers.items()
        ]

    def detach(self, component: str, module: nn.Module) -> None:
        """Remove the hooks, or put the original weight tensors back (bit for bit)."""
        for handle in self._hooks.pop(component, []):
            handle.remove()
        linears = dict(module.named_modules())
        for module_path, weight in self._originals.pop(component, {}).items():
            linear = linears[module_path]
            assert isinstance(linear, nn.Linear)
            linear.weight.data = weight.to(linear.weight.device)

    def _hook(self, f: LoraFactors) -> Any:
        def add_low_rank(linear: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
            scaling = self.scaling  # read per call so set_lora_scale needs no re-attach
            if scaling == 0.0:
                return out  # scale 0 is exactly the base model
            return out + lora_delta(args[0], f, scaling, out.dtype)

        return add_low_rank

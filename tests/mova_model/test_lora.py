"""LoRA in the original's folder format (spec §13.3) on a tiny checkpoint: numerics and errors."""

from __future__ import annotations

import copy
import hashlib
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from mova_model.joint import joint_forward
from mova_model.lora import (
    AttachedLora,
    LoraConfig,
    LoraError,
    LoraFactors,
    LoraWeights,
    read_lora,
)
from mova_model.make_checkpoint import make_checkpoint
from mova_model.pipeline import MovaPipeline
from tests.mova_model.tiny_models import tiny_inputs

# (component, module path) -> Linear(in, out) in the tiny preset
TARGETS = {
    ("video_dit", "blocks.0.self_attn.q"): (96, 96),
    ("video_dit", "blocks.1.ffn.0"): (96, 192),
    ("audio_dit", "blocks.0.cross_attn.v"): (48, 48),
    ("dual_tower_bridge", "audio_to_video_conditioners.0.inner.k"): (48, 96),
}
RANK = 4  # stored factors; the config says rank 16, alpha 8 -> scaling 0.5 (not 8 / 4)


def make_factors(seed: int = 0, dtype: torch.dtype = torch.float32,
                 fmt: str = "peft") -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    infix = ".default" if fmt == "diffsynth" else ""
    out: dict[str, Tensor] = {}
    for (component, path), (fan_in, fan_out) in TARGETS.items():
        out[f"{component}.{path}.lora_A{infix}.weight"] = (
            torch.randn(RANK, fan_in, generator=gen) / fan_in**0.5).to(dtype)
        out[f"{component}.{path}.lora_B{infix}.weight"] = (
            torch.randn(fan_out, RANK, generator=gen) / RANK**0.5).to(dtype)
    return out


def write_lora(folder: Path, tensors: dict[str, Tensor], config: dict | None = None,
               safetensors: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if safetensors:
        save_file(tensors, folder / "lora_weights.safetensors")
    else:
        torch.save(tensors, folder / "lora_weights.pt")
    if config is not None:
        torch.save(config, folder / "lora_config.pt")
    return folder


CONFIG = {"rank": 16, "alpha": 8.0, "target_modules": ["q", "k", "v", "o"]}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> MovaPipeline:
    ckpt = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)
    return MovaPipeline.from_pretrained(ckpt)


@pytest.fixture()
def clean_pipe(pipe: MovaPipeline) -> MovaPipeline:
    yield pipe
    pipe.unload_lora()


def base_state(pipe: MovaPipeline) -> dict[str, Tensor]:
    return {f"{name}.{k}": v.clone() for name in ("video_dit", "video_dit_2", "audio_dit",
                                                  "dual_tower_bridge")
            for k, v in pipe.component(name).state_dict().items()}


def step(pipe: MovaPipeline, modules: tuple[nn.Module, nn.Module, nn.Module] | None = None
         ) -> tuple[Tensor, Tensor]:
    video, audio, bridge = modules or (pipe.component("video_dit"), pipe.component("audio_dit"),
                                       pipe.component("dual_tower_bridge"))
    with torch.inference_mode():
        return joint_forward(video, audio, bridge, **tiny_inputs(), video_fps=24.0)  # type: ignore[arg-type]


class ExpectedLoraLinear(nn.Module):
    """Written from §13.3 alone: y = W x + b + (B (A x)) * scaling, factors in their dtype."""

    def __init__(self, base: nn.Linear, a: Tensor, b: Tensor, scaling: float) -> None:
        super().__init__()
        self.base, self.a, self.b, self.scaling = base, a, b, scaling

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.base.weight.T + self.base.bias
        low = (x.to(self.a.dtype) @ self.a.T) @ self.b.T
        return y + low.to(y.dtype) * self.scaling


def expected_modules(pipe: MovaPipeline, factors: dict[str, Tensor], scaling: float
                     ) -> tuple[nn.Module, nn.Module, nn.Module]:
    names = ("video_dit", "audio_dit", "dual_tower_bridge")
    copies = {name: copy.deepcopy(pipe.component(name)) for name in names}
    for (component, path), _ in TARGETS.items():
        parent_path, _, leaf = path.rpartition(".")
        parent = copies[component].get_submodule(parent_path)
        a = factors[f"{component}.{path}.lora_A.weight"]
        b = factors[f"{component}.{path}.lora_B.weight"]
        setattr(parent, leaf, ExpectedLoraLinear(getattr(parent, leaf), a, b, scaling))
    return copies["video_dit"], copies["audio_dit"], copies["dual_tower_bridge"]


def max_diff(x: tuple[Tensor, Tensor], y: tuple[Tensor, Tensor]) -> float:
    return max(float((u - v).abs().max()) for u, v in zip(x, y, strict=True))


def test_step_changes_by_exactly_the_low_rank_term_with_config_scaling(
        clean_pipe: MovaPipeline, tmp_path: Path) -> None:
    factors = make_factors()
    base = step(clean_pipe)
    clean_pipe.load_lora(write_lora(tmp_path / "brand", factors, CONFIG), scale=0.7)
    found = step(clean_pipe)
    expected = step(clean_pipe, expected_modules(clean_pipe, factors, 8.0 / 16 * 0.7))
    # alpha / rank of the stored factors (8 / 4) would be the wrong scaling
    wrong = step(clean_pipe, expected_modules(clean_pipe, factors, 8.0 / RANK * 0.7))
    assert max_diff(found, base) > 1e-2  # the LoRA really changes the step
    assert max_diff(found, expected) < 1e-5
    assert max_diff(found, wrong) > 1e-2


def test_scale_zero_is_the_base_and_set_scale_matches_a_fresh_load(
        clean_pipe: MovaPipeline, tmp_path: Path) -> None:
    folder = write_lora(tmp_path / "brand", make_factors(), CONFIG)
    base = step(clean_pipe)
    clean_pipe.load_lora(folder, scale=0.0)
    assert all(torch.equal(u, v) for u, v in zip(step(clean_pipe), base, strict=True))
    clean_pipe.set_lora_scale(0.5)
    half = step(clean_pipe)
    clean_pipe.load_lora(folder, scale=0.5)
    assert all(torch.equal(u, v) for u, v in zip(step(clean_pipe), half, strict=True))
    assert clean_pipe.lora is not None and clean_pipe.lora.scaling == pytest.approx(0.25)


def test_unload_restores_the_base_bit_for_bit_also_after_merge(
        clean_pipe: MovaPipeline, tmp_path: Path) -> None:
    before = base_state(clean_pipe)
    base = step(clean_pipe)
    folder = write_lora(tmp_path / "brand", make_factors(), CONFIG)
    clean_pipe.load_lora(folder)
    assert base_state(clean_pipe).keys() == before.keys()  # no module was replaced
    clean_pipe.unload_lora()
    assert all(torch.equal(before[k], v) for k, v in base_state(clean_pipe).items())
    clean_pipe.load_lora(folder)
    clean_pipe.merge_lora()
    changed = [k for k, v in base_state(clean_pipe).items() if not torch.equal(before[k], v)]
    assert sorted(changed) == sorted(f"{c}.{p}.weight" for c, p in TARGETS)
    clean_pipe.unload_lora()
    assert all(torch.equal(before[k], v) for k, v in base_state(clean_pipe).items())
    assert all(torch.equal(u, v) for u, v in zip(step(clean_pipe), base, strict=True))


def test_merge_writes_w_plus_ba_times_scaling_and_matches_the_hooked_output(
        clean_pipe: MovaPipeline, tmp_path: Path) -> None:
    factors = make_factors()
    clean_pipe.load_lora(write_lora(tmp_path / "brand", factors, CONFIG), scale=2.0)
    w = clean_pipe.component("video_dit").get_submodule("blocks.0.self_attn.q").weight.clone()
    hooked = step(clean_pipe)
    clean_pipe.merge_lora()
    merged = clean_pipe.component("video_dit").get_submodule("blocks.0.self_attn.q").weight
    a = factors["video_dit.blocks.0.self_attn.q.lora_A.weight"]
    b = factors["video_dit.blocks.0.self_attn.q.lora_B.weight"]
    assert torch.equal(merged, w + (b @ a) * (8.0 / 16 * 2.0))
    assert max_diff(step(clean_pipe), hooked) < 1e-5
    clean_pipe.set_lora_scale(0.0)  # a merged LoRA is rebuilt from the kept originals
    q = clean_pipe.component("video_dit").get_submodule("blocks.0.self_attn.q")
    assert torch.equal(q.weight, w)
    clean_pipe.set_lora_scale(1.0)  # and stays merged at its new scale
    assert clean_pipe.lora is not None and clean_pipe.lora.merged
    q = clean_pipe.component("video_dit").get_submodule("blocks.0.self_attn.q")
    assert torch.equal(q.weight, w + (b @ a) * (8.0 / 16 * 1.0))


def test_factors_run_in_their_own_dtype_and_cast_back() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(8, 6).to(torch.bfloat16)
    a, b = torch.randn(2, 8), torch.randn(6, 2)  # float32 factors on a bf16 layer
    holder = nn.Module()
    holder.add_module("lin", layer)
    weights = LoraWeights(LoraConfig(rank=16, alpha=16.0),
                          {"video_dit": {"lin": LoraFactors(a, b)}}, Path("mem"), "0")
    AttachedLora(weights, scale=0.7).attach("video_dit", holder)
    x = torch.randn(3, 8).to(torch.bfloat16)
    y = layer(x)
    expected = F.linear(x, layer.weight, layer.bias) + ((x.float() @ a.T) @ b.T).to(
        torch.bfloat16) * 0.7
    assert y.dtype == torch.bfloat16 and torch.equal(y, expected)


def test_both_key_formats_and_safetensors_give_the_same_step(
        clean_pipe: MovaPipeline, tmp_path: Path) -> None:
    outputs = []
    for i, (fmt, st) in enumerate([("peft", False), ("diffsynth", False), ("peft", True)]):
        clean_pipe.load_lora(write_lora(tmp_path / str(i), make_factors(fmt=fmt), CONFIG, st))
        outputs.append(step(clean_pipe))
    assert all(torch.equal(u, v) for out in outputs[1:] for u, v in zip(out, outputs[0],
                                                                        strict=True))


def test_missing_config_defaults_to_alpha_16_rank_16(clean_pipe: MovaPipeline,
                                                    tmp_path: Path) -> None:
    factors = make_factors()
    clean_pipe.load_lora(write_lora(tmp_path / "noconf", factors))
    assert clean_pipe.lora is not None and clean_pipe.lora.scaling == 1.0
    assert max_diff(step(clean_pipe), step(clean_pipe, expected_modules(clean_pipe, factors, 1.0))
                    ) < 1e-5
    assert clean_pipe.lora.weights.sha256 == hashlib.sha256(
        (tmp_path / "noconf" / "lora_weights.pt").read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("key", "shape", "message"),
    [
        ("video_dit.blocks.0.self_attn.qq.lora_A.weight", (4, 96), "blocks.0.self_attn.qq"),
        ("video_dit.blocks.0.norm3.lora_A.weight", (4, 96), "LayerNorm"),
        ("video_dit.time_embedding.0.lora_A.weight", (4, 64), "time embedding"),
        ("audio_vae.decoder.lora_A.weight", (4, 8), "audio_vae.decoder.lora_A.weight"),
        ("video_dit.blocks.0.self_attn.q.lora_A.weight", (4, 95), "Linear(96, 96)"),
        ("video_dit.blocks.0.self_attn.q.lora_C.weight", (4, 96), "lora_C"),
    ],
)
def test_a_bad_key_is_refused_by_name_and_nothing_changes(
        clean_pipe: MovaPipeline, tmp_path: Path, key: str, shape: tuple[int, int],
        message: str) -> None:
    before = base_state(clean_pipe)
    tensors = make_factors()
    tensors[key] = torch.zeros(shape)
    if key.endswith(".lora_A.weight"):
        tensors[key.replace("lora_A", "lora_B")] = torch.zeros(
            (shape[1] if "q.lora" in key else 96), 4)
    with pytest.raises(LoraError, match=message.replace("(", r"\(").replace(")", r"\)")):
        clean_pipe.load_lora(write_lora(tmp_path / "bad", tensors, CONFIG))
    assert clean_pipe.lora is None
    assert all(torch.equal(before[k], v) for k, v in base_state(clean_pipe).items())


def test_pickled_code_is_refused(clean_pipe: MovaPipeline, tmp_path: Path) -> None:
    folder = tmp_path / "evil"
    folder.mkdir()
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    (folder / "lora_weights.pt").write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(LoraError, match="tensor-only"):
        clean_pipe.load_lora(folder)
    assert not marker.exists()


def test_config_with_a_class_name_as_rank_is_refused(clean_pipe: MovaPipeline,
                                                    tmp_path: Path) -> None:
    folder = write_lora(tmp_path / "v", make_factors(), {"rank": "MOVA", "alpha": 16.0})
    with pytest.raises(LoraError, match="rank='MOVA'"):
        clean_pipe.load_lora(folder)


def _spoiled(key: str, how: str) -> dict[str, Tensor]:
    tensors = make_factors()
    value = tensors[key]
    if how in ("nan", "inf"):
        value = value.clone()
        value[0, -1] = float(how)
    elif how == "sparse":
        value = value.to_sparse()
    elif how == "meta":
        value = torch.empty_like(value, device="meta")
    elif how == "rank 0":
        tensors[key.replace("lora_A", "lora_B")] = torch.zeros(96, 0)
        value = torch.zeros(0, 96)
    tensors[key] = value
    return tensors


@pytest.mark.parametrize(("how", "message"), [
    ("nan", "hold NaN or inf"),  # was loaded: every frame NaN
    ("inf", "hold NaN or inf"),
    ("sparse", "expected dense tensors"),  # was loaded: the render then raised mid-way
    ("meta", "expected dense tensors"),
    ("rank 0", r"expected A \(rank, in\)"),  # was loaded: a LoRA changing nothing
])
def test_factors_no_render_can_use_are_refused_when_read(clean_pipe: MovaPipeline,
                                                         tmp_path: Path, how: str,
                                                         message: str) -> None:
    key = "video_dit.blocks.0.self_attn.q.lora_A.weight"
    folder = write_lora(tmp_path / "bad", _spoiled(key, how), CONFIG)
    with pytest.raises(LoraError, match=message):
        read_lora(folder)
    assert clean_pipe.lora is None


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), 0.0])
def test_an_alpha_that_is_not_finite_or_is_zero_is_refused(tmp_path: Path,
                                                            alpha: float) -> None:
    folder = write_lora(tmp_path / "a", make_factors(), {"rank": 16, "alpha": alpha})
    with pytest.raises(LoraError, match=f"alpha={alpha!r}; expected a finite, non-zero"):
        read_lora(folder)


def test_a_negative_alpha_and_float8_factors_are_read(tmp_path: Path) -> None:
    """Not refused: a negative alpha inverts the LoRA as a negative scale does; float8 factors
    (no isfinite kernel of their own) are checked for NaN too."""
    factors = {k: v.to(torch.float8_e4m3fn) for k, v in make_factors().items()}
    weights = read_lora(write_lora(tmp_path / "f8", factors, {"rank": 16, "alpha": -8.0}))
    assert weights.config.scaling == -0.5 and weights.num_layers == len(TARGETS)


def test_scale_and_state_errors(clean_pipe: MovaPipeline, tmp_path: Path) -> None:
    for action, call in (("set_lora_scale", lambda: clean_pipe.set_lora_scale(1.0)),
                         ("merge_lora", clean_pipe.merge_lora)):
        with pytest.raises(LoraError) as info:
            call()
        assert str(info.value) == f"{action}: no LoRA is loaded; call load_lora(folder) first"
    for scale in (True, "1", float("inf"), None):
        with pytest.raises(LoraError) as info:
            clean_pipe.set_lora_scale(scale)  # type: ignore[arg-type]
        assert str(info.value) == f"LoRA scale={scale!r}; expected a finite number"
    with pytest.raises(LoraError, match="finite"):
        clean_pipe.load_lora(tmp_path / "missing", scale=float("nan"))
    with pytest.raises(LoraError, match="no such LoRA"):  # (a path no one else can create)
        clean_pipe.load_lora(tmp_path / "missing")


def test_a_released_component_comes_back_with_its_lora(clean_pipe: MovaPipeline,
                                                       tmp_path: Path) -> None:
    clean_pipe.load_lora(write_lora(tmp_path / "brand", make_factors(), CONFIG))
    with_lora = step(clean_pipe)
    clean_pipe.release("video_dit")  # as release_unused does after the expert switch
    assert all(torch.equal(u, v) for u, v in zip(step(clean_pipe), with_lora, strict=True))


def test_a_safetensors_file_path_takes_the_config_beside_it(clean_pipe: MovaPipeline,
                                                            tmp_path: Path) -> None:
    factors = make_factors()
    folder = write_lora(tmp_path / "st", factors, CONFIG, safetensors=True)
    clean_pipe.load_lora(folder / "lora_weights.safetensors", scale=0.7)
    assert clean_pipe.lora is not None and clean_pipe.lora.scaling == pytest.approx(0.35)
    expected = step(clean_pipe, expected_modules(clean_pipe, factors, 0.35))
    assert max_diff(step(clean_pipe), expected) < 1e-5


def test_the_same_layer_in_both_key_formats_is_refused(clean_pipe: MovaPipeline,
                                                       tmp_path: Path) -> None:
    tensors = make_factors()
    tensors["video_dit.blocks.0.self_attn.q.lora_A.default.weight"] = torch.zeros(4, 96)
    with pytest.raises(LoraError, match="given twice"):
        clean_pipe.load_lora(write_lora(tmp_path / "dup", tensors, CONFIG))


def test_the_clip_records_the_lora_it_was_rendered_with(clean_pipe: MovaPipeline,
                                                        tmp_path: Path) -> None:
    from mova_model.request import GenerationRequest

    folder = write_lora(tmp_path / "lora", make_factors(), CONFIG)
    request = GenerationRequest("A red ball.", height=32, width=32, num_frames=5,
                                num_inference_steps=2, seed=1)
    base = clean_pipe.generate(request)
    clean_pipe.load_lora(folder, scale=0.5)
    with_lora = clean_pipe.generate(request)
    record = with_lora.params.to_dict()["lora"]
    weights = hashlib.sha256((folder / "lora_weights.pt").read_bytes()).hexdigest()
    assert record == {"weights_sha256": weights, "scale": 0.5, "scaling": 0.25, "merged": False}
    assert base.params.lora is None
    assert not (base.video == with_lora.video).all()  # the LoRA took part in the render


@pytest.mark.parametrize("content", [b"garbage\n", pickle.dumps({"x": LoraConfig()})])
def test_a_weights_file_torch_cannot_load_is_named_without_torchs_advice(
        content: bytes, tmp_path: Path) -> None:
    # `lora add` printed torch's pages of help, advising to load the file again with
    # weights_only=False ("will likely succeed"): running the code a LoRA from outside holds.
    (tmp_path / "lora_weights.pt").write_bytes(content)
    with pytest.raises(LoraError) as raised:
        read_lora(tmp_path)
    said = str(raised.value)
    assert said.startswith(f"{tmp_path / 'lora_weights.pt'}: not a tensor-only torch file "
                           "(UnpicklingError: ")
    assert "\n" not in said and "weights_only" not in said and "safe_globals" not in said

"""GenerationRequest: one validated render request, built without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest

from mova_model.errors import InvalidRequest
from mova_model.request import (
    RELEASE_NEGATIVE_PROMPT,
    Compat,
    GenerationRequest,
    GuidanceMode,
    NoiseDevice,
    RenderMode,
)

PROMPT = "A barista smiles."


@pytest.mark.parametrize(("change", "message"), [
    ({"num_frames": 24}, "num_frames=24 must be 4k+1"),
    ({"height": 60}, "must be multiples of 16"),
    ({"width": 0}, "must all be positive"),
    ({"prompt": "   "}, "prompt is empty"),
    ({"prompt": None}, "prompt=None must be str"),
    ({"guidance_mode": "triple"}, "guidance_mode='triple'; expected reference or dual"),
    ({"mode": "dub"}, "mode='dub'; expected joint or audio_only"),
    ({"compat": "exact"}, "compat='exact'; expected reference or fast"),
    ({"noise_device": "gpu"}, "noise_device='gpu'; expected render or cpu"),
    ({"num_inference_steps": 0}, "num_inference_steps=0 must be in [1, 1000]"),
    ({"cfg_scale": 0.0}, "cfg_scale=0.0 must be > 0"),
    ({"bridge_scale": -1.0}, "bridge_scale=-1.0 >= 0"),
    ({"bridge_scale": 0.3}, "bridge_scale=0.3 weighs the bridge in guidance_mode='dual' only"),
    ({"video_fps": 0}, "video_fps=0 must be in [1, 120]"),
    ({"video_fps": float("nan")}, "video_fps=nan must be finite"),
    ({"seed": -1}, "seed=-1 must be in [0, 2**63)"),
    ({"seed": 2**63}, "must be in [0, 2**63)"),
    ({"height": True}, "height=True must be a number, not a bool"),
    ({"height": "64"}, "height='64' must be int"),
    ({"vae_tiling": 1}, "vae_tiling=1 must be bool"),
    ({"audio_cfg_scale": 0.0}, "audio_cfg_scale=0.0 must be a finite number > 0"),
    ({"audio_cfg_scale": -2}, "audio_cfg_scale=-2 must be a finite number > 0"),
    ({"audio_cfg_scale": float("inf")}, "audio_cfg_scale=inf must be a finite number > 0"),
    ({"audio_cfg_scale": float("nan")}, "audio_cfg_scale=nan must be a finite number > 0"),
    ({"audio_cfg_scale": True}, "audio_cfg_scale=True must be a number, not a bool"),
    ({"audio_cfg_scale": "1.5"}, "audio_cfg_scale='1.5' must be int or float"),
])
def test_every_bad_field_is_refused_with_one_line(change: dict[str, object],
                                                  message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest(**{"prompt": PROMPT, **change})  # type: ignore[arg-type]
    assert message in str(info.value) and "\n" not in str(info.value)


def test_defaults_are_the_release_script_in_reference_mode() -> None:
    request = GenerationRequest(PROMPT)
    assert (request.height, request.width, request.num_frames) == (352, 640, 193)
    assert (request.num_inference_steps, request.cfg_scale, request.seed) == (50, 5.0, 42)
    assert request.negative_prompt == RELEASE_NEGATIVE_PROMPT
    assert request.negative_prompt.startswith("色调艳丽，过曝") and "多余的手指" in \
        request.negative_prompt
    assert request.compat is Compat.REFERENCE and not request.batched_guidance
    assert request.noise_device is NoiseDevice.RENDER and request.vae_tiling is False
    assert GenerationRequest(PROMPT, compat="fast").batched_guidance


def test_strings_become_enums_and_the_request_is_frozen() -> None:
    request = GenerationRequest(PROMPT, guidance_mode="dual", mode="audio_only")
    assert request.guidance_mode is GuidanceMode.DUAL and request.mode is RenderMode.AUDIO_ONLY
    with pytest.raises(FrozenInstanceError):
        request.seed = 3  # type: ignore[misc]


def test_dict_round_trip_through_json_and_unknown_fields_refused() -> None:
    request = GenerationRequest(PROMPT, height=64, width=112, num_frames=25, seed=9,
                                guidance_mode="dual", noise_device="cpu", vae_tiling=True)
    data = json.loads(json.dumps(request.to_dict()))
    assert data["guidance_mode"] == "dual" and data["noise_device"] == "cpu"
    assert GenerationRequest.from_dict(data) == request
    with pytest.raises(InvalidRequest, match="unknown request field.*: lora"):
        GenerationRequest.from_dict({**data, "lora": "x"})
    with pytest.raises(InvalidRequest, match="needs a prompt"):
        GenerationRequest.from_dict({"seed": 1})


def test_building_a_request_does_not_import_torch() -> None:
    code = ("import sys; from mova_model.request import GenerationRequest; "
            "GenerationRequest('x', height=64, width=112, num_frames=25); "
            "print(sorted(m for m in ('torch', 'numpy', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2]).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("change", "message"), [
    ({"height": 16000, "width": 16000, "num_frames": 401}, "height=16000 must be in [16, 2048]"),
    ({"width": 4096}, "width=4096 must be in [16, 2048]"),
    ({"num_frames": 4001}, "num_frames=4001 must be in [1, 481]"),
    ({"num_inference_steps": 10**10}, "num_inference_steps=10000000000 must be in [1, 1000]"),
    ({"video_fps": 1e-9}, "video_fps=1e-09 must be in [1, 120]"),
    ({"video_fps": 1e12}, "video_fps=1000000000000.0 must be in [1, 120]"),
])
def test_absurd_sizes_steps_and_rates_are_refused_before_any_allocation(
        change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest(**{"prompt": PROMPT, **change})  # type: ignore[arg-type]
    assert str(info.value) == message


def test_the_bounds_keep_every_size_the_release_and_the_planner_use() -> None:
    # the 720p preset in both orientations, the longest planned clip, the extremes of the range
    for height, width in ((720, 1280), (1280, 720), (2048, 2048)):
        GenerationRequest(PROMPT, height=height, width=width, num_frames=193)
    GenerationRequest(PROMPT, num_frames=481, video_fps=120.0, num_inference_steps=1000)
    GenerationRequest(PROMPT, num_frames=1, video_fps=1.0, num_inference_steps=1)


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers() -> None:
    """A size read from a numpy array was refused ("must be int, not int64"); accepted, it is
    stored as Python's own number so the request's JSON (and so its render key) stays plain."""
    import json

    import numpy as np

    request = GenerationRequest(prompt=PROMPT, height=np.int64(64), width=np.int32(112),
                                num_frames=np.uint16(17), seed=np.int64(7),
                                num_inference_steps=np.int8(4), video_fps=np.float32(24.0),
                                cfg_scale=np.float64(3.0))
    assert request == GenerationRequest(prompt=PROMPT, height=64, width=112, num_frames=17,
                                        seed=7, num_inference_steps=4, video_fps=24.0,
                                        cfg_scale=3.0)
    assert type(request.height) is int and type(request.video_fps) is float
    assert json.loads(json.dumps(request.to_dict()))["height"] == 64
    for bad, message in ((np.float64(64.0), "height=np.float64(64.0) must be int"),
                         (np.bool_(True), "must be int, not bool")):
        with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
            GenerationRequest(prompt=PROMPT, height=bad)


def test_the_audio_scale_is_left_out_of_the_dict_unless_set() -> None:
    """A render's key hashes the request's dict: requests made before the field existed keep
    their keys (and their stored clips)."""
    release = GenerationRequest(PROMPT)
    assert release.audio_cfg_scale is None and "audio_cfg_scale" not in release.to_dict()
    split = GenerationRequest(PROMPT, cfg_scale=3.0, audio_cfg_scale=np.float32(1.5))
    data = json.loads(json.dumps(split.to_dict()))
    assert data["audio_cfg_scale"] == 1.5 and type(split.audio_cfg_scale) is float
    assert GenerationRequest.from_dict(data) == split
    assert GenerationRequest.from_dict(release.to_dict()) == release

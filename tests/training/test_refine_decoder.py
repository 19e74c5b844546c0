"""training.refine_decoder: more decoder steps on a trained folder, nothing else touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training.refine_decoder import main, refine_decoder
from training.work_record import WorkFolderMismatch

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "assets" / "demo-model"
VAE_WEIGHTS = Path("video_vae") / "diffusion_pytorch_model.safetensors"


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _is_encoder(key: str) -> bool:
    return key.startswith(("encoder.", "quant_conv."))


@pytest.mark.slow
def test_only_the_decoder_changes_and_a_rerun_resumes_the_same_run(tmp_path: Path) -> None:
    out, work = tmp_path / "refined", tmp_path / "work"
    refine_decoder(DEMO_MODEL, out, work, steps=2, seed=3)

    before, after = _files(DEMO_MODEL), _files(out)
    assert before.keys() == after.keys()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {VAE_WEIGHTS}, changed  # the config (latent statistics) is kept as well
    old, new = load_file(DEMO_MODEL / VAE_WEIGHTS), load_file(out / VAE_WEIGHTS)
    assert old.keys() == new.keys()
    moved = {key for key in old if not torch.equal(old[key], new[key])}
    assert moved and not any(_is_encoder(key) for key in moved), sorted(moved)
    assert any(key.startswith("decoder.") for key in moved)
    recorded = json.loads((work / "run.json").read_text())
    assert recorded["steps"] == 2 and recorded["seed"] == 3
    assert (recorded["first_frame_weight"], recorded["feature_weight"],
            recorded["mouth_weight"], recorded["object_weight"]) == (3, 1, 1, 1)  # the recipe's

    # the same request resumes a finished run: the same folder again, no step more
    refine_decoder(DEMO_MODEL, out, work, steps=2, seed=3)
    assert _files(out) == after
    # and so does a work folder recorded before the first-frame, mouth and object weights were
    # options
    older = {key: value for key, value in recorded.items()
             if key not in ("first_frame_weight", "mouth_weight", "object_weight")}
    (work / "run.json").write_text(json.dumps(older))
    refine_decoder(DEMO_MODEL, out, work, steps=2, seed=3)
    assert _files(out) == after
    # another request on that work folder is refused, the folder as it was
    with pytest.raises(WorkFolderMismatch, match="steps: 2 then, 3 now"):
        refine_decoder(DEMO_MODEL, out, work, steps=3, seed=3)
    assert _files(out) == after


def test_the_command_refuses_what_it_cannot_do(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    work = str(tmp_path / "work")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    for args, message in (
            (["--from", "/nowhere", "--out", str(tmp_path / "o"), "--steps", "1"],
             "--from /nowhere: not a checkpoint folder"),
            (["--from", str(DEMO_MODEL), "--out", str(tmp_path / "o"), "--steps", "0"],
             "--steps 0: must be at least 1"),
            (["--from", str(DEMO_MODEL), "--out", str(DEMO_MODEL), "--steps", "1"],
             "is the --from folder"),
            (["--from", str(DEMO_MODEL), "--out", str(tmp_path / "o"), "--steps", "1",
              "--threads", "0"], "--threads 0: must be at least 1"),
            (["--from", str(DEMO_MODEL), "--out", str(tmp_path / "o"), "--steps", "1",
              "--feature-weight", "0.5"], "--feature-weight 0.5: must be a number from 1 to 10000"),
            (["--from", str(DEMO_MODEL), "--out", str(tmp_path / "o"), "--steps", "1",
              "--object-weight=-inf"],
             "--object-weight -inf: must be a number from 1 to 10000"),
            (["--from", str(DEMO_MODEL), "--out", str(tmp_path / "o"), "--steps", "1",
              "--mouth-weight", "nan"], "--mouth-weight nan: must be a number from 1 to 10000"),
            (["--from", str(DEMO_MODEL), "--out", str(tmp_path / "o"), "--steps", "1",
              "--first-frame-weight", "0"],
             "--first-frame-weight 0.0: must be a number from 1 to 10000"),
            # finite, but past float32's range: the frame weights would be inf / inf
            (["--from", str(DEMO_MODEL), "--out", str(tmp_path / "o"), "--steps", "1",
              "--first-frame-weight", "1e300"],
             "--first-frame-weight 1e+300: must be a number from 1 to 10000"),
            (["--from", str(DEMO_MODEL), "--out", str(notes), "--steps", "1"],
             "is a folder that is no checkpoint folder"),
            (["--from", str(DEMO_MODEL), "--out", str(DEMO_MODEL / "copy"), "--steps", "1"],
             "lies inside the --from folder")):
        # the command's own entry point in this process (a process each took 10 s of imports)
        with pytest.raises(SystemExit) as refused:
            main([*args, "--work", work])
        stderr = capsys.readouterr().err
        assert refused.value.code == 2 and message in stderr, stderr
    # and once as the command line runs it: exit status 2, the reason on stderr
    done = subprocess.run([sys.executable, "-m", "training.refine_decoder", "--from", "/nowhere",
                           "--out", str(tmp_path / "o"), "--steps", "1", "--work", work],
                          capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 2 and "--from /nowhere: not a checkpoint folder" in done.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "o").exists()
    assert (notes / "keep.txt").read_text() == "mine" and not (DEMO_MODEL / "copy").exists()
    # called as a function, the same request is refused the same way, before the work folder
    with pytest.raises(ValueError, match="lies inside the --from folder"):
        refine_decoder(DEMO_MODEL, DEMO_MODEL / "copy", tmp_path / "work", steps=1, seed=0)
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_a_state_that_gives_no_finite_loss_stops_the_run_and_keeps_the_folder_written(
        tmp_path: Path) -> None:
    out, work = tmp_path / "refined", tmp_path / "work"
    command = [sys.executable, "-m", "training.refine_decoder", "--from", str(DEMO_MODEL),
               "--out", str(out), "--work", str(work), "--steps", "2", "--seed", "3"]
    subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    written = _files(out)
    # the saved state damaged, one step back: resuming it takes step 2 again, from NaN weights
    state_file = work / "state" / "video_vae_decoder.pt"
    state = torch.load(state_file, weights_only=False)
    decoder_key = next(key for key in state["model"] if key.startswith("decoder."))
    state["model"][decoder_key].fill_(float("nan"))
    state["step"] = 1
    torch.save(state, state_file)

    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    assert "stage=video_vae_decoder step=2: the loss is nan; training stopped" in done.stderr
    assert "Traceback" not in done.stderr
    assert _files(out) == written  # the folder of the finished run, not replaced

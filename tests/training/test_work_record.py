"""A training work folder resumes only the run it was started with."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest

from training.common import BUDGETS
from training.run import main
from training.work_record import (
    CODEC_COMPONENTS,
    RECORD_NAME,
    WorkFolderMismatch,
    claim_work_folder,
    describe_run,
)

DEMO_MODEL = Path(__file__).resolve().parents[2] / "assets" / "demo-model"
SMOKE = BUDGETS["smoke"]


def _run(**changes: object) -> dict[str, object]:
    asked: dict[str, object] = dict(seed=0, preset="tiny", budget=SMOKE, init_from=None,
                                    codecs_from=None, bridge_on_time=None)
    asked.update(changes)
    return describe_run(**asked)  # type: ignore[arg-type]


def _contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _copy_codecs(to: Path) -> Path:
    for name in CODEC_COMPONENTS:
        shutil.copytree(DEMO_MODEL / name, to / name)
    return to


def test_the_same_run_resumes_and_another_is_refused_before_anything_changes(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    claim_work_folder(work, _run())
    (work / "state").mkdir()
    (work / "state" / "diffusion.pt").write_bytes(b"a run's state")
    before = _contents(work)
    claim_work_folder(work, _run())  # a rerun of the same run resumes
    claim_work_folder(work, _run(budget=dataclasses.replace(SMOKE, dit_steps=99)))  # --dit-steps
    for other, difference in [
            (_run(seed=1), "seed: 0 then, 1 now"),
            (_run(budget=dataclasses.replace(SMOKE, num_clips=4)),
             "budget.num_clips: 8 then, 4 now"),
            (_run(bridge_on_time=2.0), "bridge_on_time: none then, 2.0 now"),
            (_run(codecs_from=DEMO_MODEL), f"codecs_from: none then, {DEMO_MODEL} (sha256 "),
    ]:
        with pytest.raises(WorkFolderMismatch, match="holds another run") as refused:
            claim_work_folder(work, other)
        assert difference in str(refused.value) and "give a new --work" in str(refused.value)
        assert _contents(work) == before


def test_taken_codecs_are_known_by_their_bytes_not_their_path(tmp_path: Path) -> None:
    work = tmp_path / "work"
    claim_work_folder(work, _run(codecs_from=DEMO_MODEL))
    moved = _copy_codecs(tmp_path / "moved")  # the same codecs elsewhere: the same run
    claim_work_folder(work, _run(codecs_from=moved))
    retrained = _copy_codecs(tmp_path / "retrained")  # one weight changed: another run
    weights = retrained / "video_vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(WorkFolderMismatch, match=f"codecs_from: {DEMO_MODEL} .* then, "
                                                 f"{retrained} .* now"):
        claim_work_folder(work, _run(codecs_from=retrained))
    with pytest.raises(WorkFolderMismatch, match="init_from: none then"):
        claim_work_folder(work, _run(init_from=DEMO_MODEL, codecs_from=None))


def test_a_folder_started_before_runs_were_recorded_is_adopted_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    work = tmp_path / "work"
    (work / "state").mkdir(parents=True)
    with caplog.at_level(logging.WARNING, logger="training"):
        claim_work_folder(work, _run())
    assert "started before runs were recorded" in caplog.text
    assert json.loads((work / RECORD_NAME).read_text())["seed"] == 0
    with pytest.raises(WorkFolderMismatch):  # from then on it is checked
        claim_work_folder(work, _run(seed=3))


def test_a_record_from_before_a_request_existed_resumes_at_that_requests_old_value(
        tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    older = _run()
    # recorded before --mouth-weight(-in) and --shift existed: every run counted the mouth
    # once, in every sample, at shift 5
    del older["mouth_weight"], older["mouth_weight_where"], older["shift"]
    (work / RECORD_NAME).write_text(json.dumps(older))
    claim_work_folder(work, _run())
    with pytest.raises(WorkFolderMismatch, match="mouth_weight: 1.0 then, 8.0 now"):
        claim_work_folder(work, _run(mouth_weight=8.0))
    with pytest.raises(WorkFolderMismatch, match="shift: 5.0 then, 1.0 now"):
        claim_work_folder(work, _run(shift=1.0))
    with pytest.raises(WorkFolderMismatch, match='mouth_weight_where: "all" then, "voice-led" now'):
        claim_work_folder(work, _run(mouth_weight_where="voice-led"))


def test_a_record_from_before_a_budget_field_existed_resumes_at_its_old_value(
        tmp_path: Path) -> None:
    # every run before `calibration_clips` measured its codecs on 24 clips
    work = tmp_path / "work"
    work.mkdir()
    as_before = dataclasses.replace(SMOKE, calibration_clips=24)
    older = _run(budget=as_before)
    del older["budget"]["calibration_clips"]  # type: ignore[attr-defined]
    (work / RECORD_NAME).write_text(json.dumps(older))
    claim_work_folder(work, _run(budget=as_before))
    with pytest.raises(WorkFolderMismatch, match="budget.calibration_clips: 24 then, 4 now"):
        claim_work_folder(work, _run())


def test_the_command_refuses_a_work_folder_of_another_run_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    claim_work_folder(work, _run())
    before = _contents(work)
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), "--work", str(work), "--budget", "smoke",
              "--codecs-from", str(DEMO_MODEL)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"work folder {work} holds another run: codecs_from: none then" in err
    assert _contents(work) == before and not (tmp_path / "out").exists()


def test_a_rerun_at_another_diffusion_rate_is_refused_since_the_state_holds_the_first_rate(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "work"
    claim_work_folder(work, _run())
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "out"), "--work", str(work), "--budget", "smoke",
              "--dit-lr", "1e-4"])
    assert exit_info.value.code == 2
    assert f"budget.dit_lr: {SMOKE.dit_lr} then, 0.0001 now" in capsys.readouterr().err


@pytest.mark.parametrize("record", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_an_unreadable_record_is_refused_not_overwritten(tmp_path: Path, record: bytes) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / RECORD_NAME).write_bytes(record)
    with pytest.raises(WorkFolderMismatch, match=f"its {RECORD_NAME} is not"):
        claim_work_folder(work, _run())
    assert (work / RECORD_NAME).read_bytes() == record

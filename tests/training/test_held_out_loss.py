"""bench/held_out_loss.py: training clips against unseen ones, under the same noise."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.content import EVAL_SEED
from bench.held_out_loss import held_out_loss, main
from training.run import WORLD_SEED_OFFSET

ROOT = Path(__file__).resolve().parents[2]
DEMO_MODEL = ROOT / "assets" / "demo-model"


@pytest.mark.slow
def test_both_sets_see_the_same_noise_so_only_the_clips_make_the_gap() -> None:
    # a "training" set drawn from the unseen set's seed: the same clips, so the gap is exactly 0
    same = held_out_loss(DEMO_MODEL, num_clips=4, training_seed=EVAL_SEED - WORLD_SEED_OFFSET)
    for expert in ("high_noise", "low_noise"):
        assert same[expert]["training"] == same[expert]["unseen"]
        assert same[expert]["gap"] == {"video": 0.0, "audio": 0.0}
    # the demo model's own training clips: other clips, other losses, all finite
    own = held_out_loss(DEMO_MODEL, num_clips=4)
    losses = [own[e][s][m] for e in ("high_noise", "low_noise") for s in ("training", "unseen")
              for m in ("video", "audio")]
    assert all(math.isfinite(x) and x > 0 for x in losses)
    assert own["high_noise"]["training"] != own["high_noise"]["unseen"]


def test_the_command_refuses_what_it_cannot_measure(capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in ((["--checkpoint", "/nowhere"], "not a MOVA checkpoint folder"),
                          (["--checkpoint", str(DEMO_MODEL), "--clips", "0"],
                           "--clips 0: must be at least 1"),
                          (["--checkpoint", str(DEMO_MODEL), "--training-seed", "-1"],
                           "--training-seed -1: must not be negative")):
        with pytest.raises(SystemExit) as refused:  # the script's entry point, in this process
            main(args)
        stderr = capsys.readouterr().err
        assert refused.value.code == 2 and message in stderr, stderr
    # and once as a script: exit status 2, the reason on stderr
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "held_out_loss.py"),
                           "--checkpoint", "/nowhere"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "not a MOVA checkpoint folder" in done.stderr, done.stderr

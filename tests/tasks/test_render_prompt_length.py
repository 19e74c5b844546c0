"""A scene whose prompt is longer than the model reads (512 tokens) is rendered, as the release
renders it (cut), and the cut is visible: in the clip's recorded params and as a warning
naming the render key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from infra import repository as repo
from infra.db import session_scope
from infra.settings import load_settings
from tasks.ingest import plan_brief
from tasks.render import (
    RenderResult,
    load_render_model,
    pending_payloads,
    record_render,
    render_on_worker,
)
from tasks.services import Services
from tasks.submission import submit_brief
from tests.example_brief import single_variant_text

# "a" is one token of the tiny tokenizer: with the brand line and the EOS, well past 512.
LONG_VISUAL = " ".join(["a"] * 900)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def test_a_prompt_past_512_tokens_is_rendered_recorded_and_warned_about(
        tmp_path: Path, checkpoint: Path, caplog: pytest.LogCaptureFixture) -> None:
    services = Services(load_settings({"MOVA_DATA_DIR": str(tmp_path / "data"),
                                       "MOVA_CHECKPOINT": str(checkpoint)}))
    brief_id = submit_brief(services, single_variant_text(visual=LONG_VISUAL))
    with session_scope(services.engine) as session:
        repo.claim_submitted_briefs(session, 1, "test")
    assert plan_brief(services, brief_id) is not None
    (payload,) = pending_payloads(services, brief_id)
    model = load_render_model(services.settings.model_dump_json())
    result = RenderResult.model_validate(render_on_worker(model, payload))

    tokens = model.pipeline.text_encoder.token_count(payload["spec"]["request"]["prompt"])
    assert tokens > 512
    assert result.params["prompt_tokens"] == tokens
    assert result.params["prompt_tokens_kept"] == 512
    assert result.params["prompt_truncated"] is True

    with caplog.at_level(logging.WARNING, logger="tasks"):
        record_render(services, brief_id, result)
    (warning,) = [r.getMessage() for r in caplog.records if "prompt_truncated" in r.getMessage()]
    assert f"dropped={tokens - 512}" in warning and f"prompt_tokens={tokens}" in warning
    with session_scope(services.engine) as session:
        job = repo.get_render_job(session, result.job_id)
        assert f"render_key={job.spec_key}" in warning
        # the clip's lineage row keeps the flag: manifests copy these params as `render`
        assert job.clip is not None and job.clip.params["generation"]["prompt_truncated"] is True

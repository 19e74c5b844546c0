"""A first frame enters a render key by its content: the same image under two names is one
render, and an image changed after planning is refused by the worker, not rendered silently."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from infra import repository as repo
from infra.db import session_scope
from infra.hashing import sha256_bytes
from infra.settings import load_settings
from schemas.plan import RenderSpec
from tasks.ingest import plan_brief
from tasks.render import load_render_model, pending_payloads, render_on_worker
from tasks.services import Services
from tasks.submission import submit_brief
from tests.example_brief import single_variant_text

ROOT = Path(__file__).resolve().parents[2]


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (112, 64), colour).save(out, format="PNG")
    return out.getvalue()


def _brief(first_frame: str, campaign: str) -> str:
    return single_variant_text(campaign=campaign, first_frame=first_frame)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def _plan(services: Services, raw: str, base_dir: Path, team: str | None = None) -> RenderSpec:
    brief_id = submit_brief(services, raw, base_dir=base_dir, team=team)
    with session_scope(services.engine) as session:
        repo.claim_submitted_briefs(session, 1, "test")
    plan = plan_brief(services, brief_id)
    assert plan is not None and len(plan.renders) == 1
    return plan.renders[0]


def test_first_frames_are_keyed_by_content_and_checked_on_the_worker(
        tmp_path: Path, checkpoint: Path) -> None:
    services = Services(load_settings({"MOVA_DATA_DIR": str(tmp_path / "data"),
                                       "MOVA_CHECKPOINT": str(checkpoint)}))
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    image = _png((200, 80, 20))
    (uploads / "hero.png").write_bytes(image)
    first = _plan(services, _brief("hero.png", "spring"), uploads)
    assert first.first_frame_sha256 == sha256_bytes(image)
    with session_scope(services.engine) as session:
        repo.add_team(session, "emea", "0" * 64)
    renamed = _plan(services, _brief("hero.png", "summer"), uploads, team="emea")
    # Stored under the other team's key, the same pixels: one render.
    assert renamed.first_frame != first.first_frame and renamed.key == first.key
    (uploads / "other.png").write_bytes(_png((20, 80, 200)))
    assert _plan(services, _brief("other.png", "autumn"), uploads).key != first.key

    # The stored image is replaced after planning: the worker refuses to render another picture
    # under the planned key.
    assert first.first_frame is not None
    services.store.put_bytes(_png((0, 0, 0)), first.first_frame)
    with session_scope(services.engine) as session:
        spring_id = repo.campaign_briefs(session, "spring")[0].id
    payload = next(p for p in pending_payloads(services, spring_id)
                   if p["spec"]["first_frame_sha256"] == first.first_frame_sha256)
    model = load_render_model(services.settings.model_dump_json())
    with pytest.raises(ValueError, match="changed since the brief was planned"):
        render_on_worker(model, payload)

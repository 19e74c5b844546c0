"""Continuity (issue 13 part 2): a scene with `continue_from` renders after the scene it
continues, from that render's last frame; a retake of a scene re-renders the scenes chained
after it in the same language and aspect, nothing else. Real task functions, SQLite, local
storage, the tiny model in-process."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import numpy as np
import pytest
import yaml

from infra import repository as repo
from infra.db import session_scope
from infra.hashing import sha256_bytes
from infra.settings import load_settings
from infra.statuses import DeliverableStatus, RenderStatus
from mova_model.pipeline import MovaPipeline
from schemas.plan import RenderSpec
from tasks.ingest import plan_brief
from tasks.render import pending_payloads, read_clip
from tasks.retake import retake
from tasks.services import Services
from tasks.submission import submit_brief
from tests.example_brief import example_text
from tests.tasks.in_process import render_all

ROOT = Path(__file__).resolve().parents[2]


def _brief(locales: list[str], aspects: list[str], dubbing: str = "lipsync",
           chain_outro: bool = False) -> str:
    """Three half-second scenes: `intro` speaks, `hero` continues it, `outro` stands alone (or
    continues `hero` with `chain_outro`)."""
    brief = yaml.safe_load(example_text())
    intro = brief["scenes"][0]
    intro.update(scene_id="intro", duration_s=0.5)
    intro["dialogue"] = {k: v for k, v in intro["dialogue"].items() if k in locales}
    intro["on_screen_text"] = {k: v for k, v in intro["on_screen_text"].items() if k in locales}
    hero = {"scene_id": "hero", "visual": "The shoe in close-up on the wet pavement.",
            "duration_s": 0.5, "continue_from": "intro"}
    outro = {"scene_id": "outro", "visual": "The logo on white.", "duration_s": 0.5}
    if chain_outro:
        outro["continue_from"] = "hero"
    brief.update(locales=locales, aspects=aspects, dubbing=dubbing, scenes=[intro, hero, outro])
    return yaml.safe_dump(brief, allow_unicode=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


def _planned(tmp_path: Path, checkpoint: Path, brief: str,
             profile: str = "tiny") -> tuple[Services, UUID]:
    services = Services(load_settings({"MOVA_DATA_DIR": str(tmp_path),
                                       "MOVA_CHECKPOINT": str(checkpoint),
                                       "MOVA_RENDER_PROFILE": profile}))
    brief_id = submit_brief(services, brief)
    with session_scope(services.engine) as session:
        repo.claim_submitted_briefs(session, 1, "test")
    plan_brief(services, brief_id)
    return services, brief_id


def _render_key(services: Services, brief_id: UUID, name: str) -> str:
    with session_scope(services.engine) as session:
        return next(d.render_key for d in repo.get_brief(session, brief_id).deliverables
                    if d.name == name)


def _spec(services: Services, key: str) -> RenderSpec:
    with session_scope(services.engine) as session:
        return RenderSpec.model_validate(repo.render_job(session, key).spec)


def test_a_continued_scene_renders_after_and_from_its_predecessors_last_frame(
        tmp_path: Path, checkpoint: Path) -> None:
    services, brief_id = _planned(tmp_path, checkpoint, _brief(["en-US"], ["16:9"]))
    intro = _render_key(services, brief_id, "intro/en-US/16:9")
    hero = _render_key(services, brief_id, "hero/en-US/16:9")
    assert _spec(services, hero).continue_from == intro
    first_round = pending_payloads(services, brief_id)  # hero waits for intro
    assert {p["spec"]["scene_id"] for p in first_round} == {"intro", "outro"}
    render_all(services, brief_id)  # takes the two left running again, then hero

    with session_scope(services.engine) as session:
        jobs = repo.render_jobs(session, [intro, hero])
        intro_clip = read_clip(services.store, str(jobs[intro].clip.params["key"]))
        hero_artifact = jobs[hero].clip
        hero_clip = read_clip(services.store, str(hero_artifact.params["key"]))
        ancestors = {a.id for _, a in repo.lineage_chain(session, hero_artifact.id)}
        assert jobs[intro].clip.id in ancestors
    last = np.ascontiguousarray(intro_clip.video[-1])
    assert hero_clip.params["first_frame"] == {"continues": intro,
                                               "sha256": sha256_bytes(last.tobytes()),
                                               "shape": list(last.shape)}
    # On rendered pixels: the chained clip is exactly the model's render of its request from
    # the predecessor's last frame, and not the text-only render of that request.
    pipe = MovaPipeline.from_pretrained(checkpoint)
    request = _spec(services, hero).request
    assert np.array_equal(pipe.generate(request, image=last).video, hero_clip.video)
    assert not np.array_equal(pipe.generate(request).video, hero_clip.video)


def test_a_failed_predecessor_fails_the_chain_after_it_with_the_reason(
        tmp_path: Path, checkpoint: Path) -> None:
    services, brief_id = _planned(tmp_path, checkpoint,
                                  _brief(["en-US"], ["16:9"], chain_outro=True))
    intro, hero, outro = (_render_key(services, brief_id, f"{s}/en-US/16:9")
                          for s in ("intro", "hero", "outro"))
    assert [p["spec"]["scene_id"] for p in pending_payloads(services, brief_id)] == ["intro"]
    with session_scope(services.engine) as session:
        repo.fail_render(session, repo.render_job(session, intro).id, "CUDA out of memory")
    # One pass settles the whole chain: nothing is left waiting for a render that never comes.
    assert pending_payloads(services, brief_id) == []
    with session_scope(services.engine) as session:
        jobs = repo.render_jobs(session, [hero, outro])
        assert {job.status for job in jobs.values()} == {RenderStatus.FAILED}
        assert jobs[hero].error == ("the render of the scene it continues (intro) failed: "
                                    "CUDA out of memory")
        assert jobs[outro].error.startswith("the render of the scene it continues (hero) "
                                            "failed: the render of the scene it continues "
                                            "(intro)")


def test_a_retake_moves_the_chain_after_it_in_that_language_and_aspect_only(
        tmp_path: Path, checkpoint: Path) -> None:
    services, brief_id = _planned(tmp_path, checkpoint,
                                  _brief(["en-US", "de-DE"], ["16:9", "1:1"], chain_outro=True))
    names = [f"{s}/{loc}/{a}" for s in ("intro", "hero", "outro") for loc in ("en-US", "de-DE")
             for a in ("16:9", "1:1")]
    before = {name: _render_key(services, brief_id, name) for name in names}
    with session_scope(services.engine) as session:
        row = next(d for d in repo.get_brief(session, brief_id).deliverables
                   if d.name == "intro/en-US/16:9")
        spec = RenderSpec.model_validate(repo.render_job(session, row.render_key).spec)
        moved = retake(session, row, spec.with_seed(spec.seed + 1), error="QC failed",
                       reset_attempts=False)
    assert moved == ["hero/en-US/16:9", "outro/en-US/16:9"]  # the chain, transitively
    after = {name: _render_key(services, brief_id, name) for name in names}
    assert {n for n in names if after[n] != before[n]} == {
        "intro/en-US/16:9", "hero/en-US/16:9", "outro/en-US/16:9"}
    new_hero = _spec(services, after["hero/en-US/16:9"])
    assert new_hero.continue_from == after["intro/en-US/16:9"]
    assert _spec(services, after["outro/en-US/16:9"]).continue_from == after["hero/en-US/16:9"]
    assert new_hero.seed == _spec(services, before["hero/en-US/16:9"]).seed  # same take
    with session_scope(services.engine) as session:
        statuses = {d.name: d.status for d in repo.get_brief(session, brief_id).deliverables}
        assert repo.render_job(session, after["hero/en-US/16:9"]).status == RenderStatus.PENDING
    assert set(statuses.values()) == {DeliverableStatus.PENDING}


def test_a_new_soundtrack_on_the_same_picture_moves_nothing(
        tmp_path: Path, checkpoint: Path) -> None:
    services, brief_id = _planned(tmp_path, checkpoint,
                                  _brief(["en-US", "de-DE"], ["16:9"], dubbing="voiceover"))
    hero_before = _render_key(services, brief_id, "hero/de-DE/16:9")
    with session_scope(services.engine) as session:
        row = next(d for d in repo.get_brief(session, brief_id).deliverables
                   if d.name == "intro/de-DE/16:9")  # a dub on the en-US master picture
        spec = RenderSpec.model_validate(repo.render_job(session, row.render_key).spec)
        assert spec.master_key is not None
        assert retake(session, row, spec.with_seed(spec.seed + 1), error=None,
                      reset_attempts=True) == []
    assert _render_key(services, brief_id, "hero/de-DE/16:9") == hero_before


def test_a_render_every_locale_shares_goes_first_so_spots_complete_early(
        tmp_path: Path, checkpoint: Path) -> None:
    # outro says nothing: one render serves both languages' outro, so every spot waits on it;
    # it renders before the per-language intros (hero waits for its intro in any order)
    services, brief_id = _planned(tmp_path, checkpoint, _brief(["en-US", "de-DE"], ["16:9"]))
    outro = _render_key(services, brief_id, "outro/en-US/16:9")
    assert outro == _render_key(services, brief_id, "outro/de-DE/16:9")
    first_round = [p["spec"]["scene_id"] for p in pending_payloads(services, brief_id)]
    assert first_round == ["outro", "intro", "intro"]

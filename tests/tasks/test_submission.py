"""Submission at the door, through the real `tasks.submission.submit` on SQLite and PostgreSQL:
campaigns per team, same brief twice, first frames checked, per-brief caps, and the team's
limits enforced atomically under parallel submissions."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sqlalchemy import func, select

from app.auth import create_team
from infra import repository as repo
from infra.db import session_scope
from infra.db_models import BriefRow, Campaign
from infra.settings import load_settings
from infra.statuses import BriefStatus
from schemas.brief import BrandKit, load_brief
from schemas.errors import BriefInvalid
from tasks.services import Services
from tasks.submission import SubmissionRefused, submit
from tests.example_brief import example_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = example_text()
# The example: 1 scene x 2 locales x 2 aspects (two orientations) = 4 renders of 8 steps at
# the tiny profile; at the default 0.05 s per step that is 1.6 GPU-seconds.
EXAMPLE_GPU_SECONDS = 4 * 8 * 0.05


def _services(tmp_path: Path, request: pytest.FixtureRequest, **env: str) -> Services:
    values = {"MOVA_DATA_DIR": str(tmp_path), **env}
    if request.param == "postgres":
        request.getfixturevalue("postgres_engine")  # migrated; emptied after the test
        values["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    services = Services(load_settings(values))
    with session_scope(services.engine) as session:
        for team in ("emea", "apac"):
            create_team(session, team)
    return services


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> pytest.FixtureRequest:
    return request


@pytest.fixture
def services(backend: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    with _services(tmp_path, backend, API_SUBMISSIONS_PER_MINUTE="10") as services:
        yield services


def _brief(**changes: object) -> str:
    brief = yaml.safe_load(EXAMPLE)
    brief.update(changes)
    return yaml.safe_dump(brief)


def _png(size: tuple[int, int] = (96, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(out, format="PNG")
    return out.getvalue()


def _with_first_frame(ref: str) -> str:
    brief = yaml.safe_load(EXAMPLE)
    brief["scenes"][0]["first_frame"] = ref
    return yaml.safe_dump(brief)


def _stored_briefs(services: Services, team: str) -> int:
    with session_scope(services.engine) as session:
        return int(session.scalar(select(func.count()).select_from(BriefRow)
                                  .where(BriefRow.team == team)) or 0)


def test_two_teams_with_one_slug_get_two_campaigns(services: Services) -> None:
    emea = submit(services, EXAMPLE, team="emea")
    apac = submit(services, EXAMPLE, team="apac")
    assert emea.created and apac.created and emea.brief_id != apac.brief_id
    with session_scope(services.engine) as session:
        campaigns = {(c.team, c.slug): c.id for c in session.scalars(select(Campaign))}
        rows = {team: repo.team_briefs(session, team) for team in ("emea", "apac")}
        assert [r.id for r in rows["emea"]] == [emea.brief_id]
        assert [r.id for r in rows["apac"]] == [apac.brief_id]
        assert rows["emea"][0].campaign_id == campaigns[("emea", "aurora-spring-launch")]
        assert rows["apac"][0].campaign_id == campaigns[("apac", "aurora-spring-launch")]
        assert repo.team_brief(session, "apac", emea.brief_id) is None
    assert len(campaigns) == 2


def test_the_same_brief_twice_is_one_brief(services: Services) -> None:
    first = submit(services, EXAMPLE, team="emea")
    again = submit(services, EXAMPLE, team="emea")
    assert first.created and not again.created and again.brief_id == first.brief_id
    keyed = submit(services, _brief(seed=1), team="emea", idempotency_key="k-1")
    retried = submit(services, _brief(seed=1), team="emea", idempotency_key="k-1")
    assert keyed.created and not retried.created and retried.brief_id == keyed.brief_id
    other_team = submit(services, EXAMPLE, team="apac")  # content is per team
    assert other_team.created
    assert _stored_briefs(services, "emea") == 2
    # the CLI (no team): `make demo` twice submits once
    assert submit(services, EXAMPLE).created and not submit(services, EXAMPLE).created


def test_the_answer_carries_the_cost_estimate(services: Services) -> None:
    submitted = submit(services, EXAMPLE, team="emea")
    assert submitted.cost is not None
    assert (submitted.cost.renders, submitted.cost.variants, submitted.cost.steps) == (4, 4, 32)
    assert submitted.cost.gpu_seconds == pytest.approx(EXAMPLE_GPU_SECONDS)
    with session_scope(services.engine) as session:
        row = repo.get_brief(session, submitted.brief_id)
        assert row.gpu_seconds_estimate == pytest.approx(EXAMPLE_GPU_SECONDS)


def test_parallel_submissions_never_pass_the_rate_limit(services: Services) -> None:
    """20 at once with a limit of 10: the check and the insert are one locked step."""
    outcomes: list[str] = []
    lock = threading.Lock()

    def post(i: int) -> None:
        try:
            submit(services, _brief(seed=1000 + i), team="emea")
            result = "stored"
        except SubmissionRefused:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == ["refused"] * 10 + ["stored"] * 10
    assert _stored_briefs(services, "emea") == 10
    submit(services, _brief(seed=1), team="apac")  # the limit is per team


def test_invalid_briefs_count_toward_the_rate_limit(services: Services) -> None:
    for _ in range(10):
        with pytest.raises(BriefInvalid):
            submit(services, "campaign: x\n", team="emea")
    with pytest.raises(SubmissionRefused, match="limit 10"):
        submit(services, EXAMPLE, team="emea")
    with pytest.raises(SubmissionRefused):  # a bad brief past the limit is refused too
        submit(services, "campaign: x\n", team="emea")
    assert _stored_briefs(services, "emea") == 0


def test_parallel_submissions_never_pass_the_daily_gpu_budget(
        backend: pytest.FixtureRequest, tmp_path: Path) -> None:
    budget = 5 * EXAMPLE_GPU_SECONDS + 0.5  # room for 5 example briefs, not 6
    with _services(tmp_path, backend, API_SUBMISSIONS_PER_MINUTE="100",
                   TEAM_GPU_SECONDS_PER_DAY=str(budget)) as services:
        refused: list[str] = []

        def post(i: int) -> None:
            try:
                submit(services, _brief(seed=2000 + i), team="emea")
            except SubmissionRefused as err:
                refused.append(str(err))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert _stored_briefs(services, "emea") == 5 and len(refused) == 7
        assert "TEAM_GPU_SECONDS_PER_DAY" in refused[0]
        with session_scope(services.engine) as session:
            from datetime import UTC, datetime

            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            assert repo.team_gpu_seconds_since(session, "emea", today) <= budget


def test_a_brief_over_the_caps_is_refused_with_the_numbers(
        backend: pytest.FixtureRequest, tmp_path: Path) -> None:
    with _services(tmp_path, backend, MAX_VARIANTS_PER_BRIEF="3",
                   MAX_RENDERS_PER_BRIEF="3") as services:
        with pytest.raises(BriefInvalid) as err:
            submit(services, EXAMPLE, team="emea")
        messages = " ".join(message for _, message in err.value.problems)
        assert "4 variants" in messages and "at most 3" in messages and "4 renders" in messages
        assert _stored_briefs(services, "emea") == 0


def test_uploaded_first_frames_are_verified_and_stored_under_the_team(
        backend: pytest.FixtureRequest, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "hero.png").write_bytes(_png())
    (uploads / "fake.png").write_bytes(b"this is text, not a PNG")
    (uploads / "huge.png").write_bytes(_png((200, 100)))
    with _services(tmp_path / "data", backend, MAX_FIRST_FRAME_PIXELS="10000") as services:
        with pytest.raises(BriefInvalid, match="not an image"):
            submit(services, _with_first_frame("fake.png"), base_dir=uploads, team="emea")
        with pytest.raises(BriefInvalid, match="20,000 pixels; the limit is 10,000"):
            submit(services, _with_first_frame("huge.png"), base_dir=uploads, team="emea")
        ok = submit(services, _with_first_frame("hero.png"), base_dir=uploads, team="emea")
        with session_scope(services.engine) as session:
            raw = repo.get_brief(session, ok.brief_id).raw
        key = yaml.safe_load(raw)["scenes"][0]["first_frame"]
        assert key.startswith("inputs/emea/") and services.store.exists(key)
        # apac cannot point at emea's upload; emea can reuse its own
        with pytest.raises(BriefInvalid, match="not an upload of team apac"):
            submit(services, _with_first_frame(key), team="apac")
        reuse = yaml.safe_load(_with_first_frame(key))
        reuse["seed"] = 99
        assert submit(services, yaml.safe_dump(reuse), team="emea").created


def test_a_brief_beside_its_files_may_keep_them_in_a_sub_folder(services: Services,
                                                               tmp_path: Path) -> None:
    """The CLI's files beside the brief: `frames/good.png` is found there (the service's
    uploads, plain file names, are told to name it `good.png`: tests/app)."""
    (tmp_path / "brief" / "frames").mkdir(parents=True)
    (tmp_path / "brief" / "frames" / "good.png").write_bytes(_png())
    assert submit(services, _with_first_frame("frames/good.png"), base_dir=tmp_path / "brief",
                  team="emea").created


def test_a_file_over_the_size_limit_is_refused_without_being_read(
        services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A first frame pointing at a video or a disk image by mistake was read whole into memory
    # (here 8 GiB, sparse on disk) before the size check refused it.
    folder = tmp_path / "brief"
    folder.mkdir()
    with (folder / "take.png").open("wb") as huge:
        huge.truncate(8 * 2**30)
    read = Path.read_bytes

    def read_small(path: Path) -> bytes:
        assert path.name != "take.png", "the file over the limit was read"
        return read(path)

    monkeypatch.setattr(Path, "read_bytes", read_small)
    limit = services.settings.max_first_frame_bytes
    with pytest.raises(BriefInvalid, match=f"take.png: the file is {8 * 2**30:,} bytes; the "
                                           f"limit is {limit:,}"):
        submit(services, _with_first_frame("take.png"), base_dir=folder, team="emea")


def test_the_render_worker_checks_a_first_frame_again_before_decoding_it(
        tmp_path: Path) -> None:
    """The object behind a checked first frame can change before its render (an S3 prefix
    is the team's own bucket); PIL's guard only refuses twice its limit, so the worker runs
    the same check as the door and fails the render with the reason."""
    from uuid import uuid4

    from infra.images import ImageRejected
    from mova_model.request import GenerationRequest
    from schemas.plan import Orientation, RenderSpec
    from tasks.render import RenderModel, RenderPayload, _first_frame

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "hero.png").write_bytes(_png())
    with Services(load_settings({"MOVA_DATA_DIR": str(tmp_path / "data"),
                                 "MAX_FIRST_FRAME_PIXELS": "10000"})) as services:
        with session_scope(services.engine) as session:
            create_team(session, "emea")
        ok = submit(services, _with_first_frame("hero.png"), base_dir=uploads, team="emea")
        with session_scope(services.engine) as session:
            key = yaml.safe_load(repo.get_brief(session, ok.brief_id).raw)["scenes"][0][
                "first_frame"]
        worker = RenderModel(pipeline=None, store=services.store, settings=services.settings)
        # planned without a content hash, so only the door's check stands between the object
        # and the decoder (a hash mismatch is the other guard, tested in test_first_frame_key)
        payload = RenderPayload(job_id=uuid4(), spec=RenderSpec(
            scene_id="s", orientation=Orientation.LANDSCAPE, first_frame=key, checkpoint="c",
            request=GenerationRequest("a scene")))
        image, _ = _first_frame(worker, payload)
        assert image.size == (96, 64)
        for replaced, reason in ((_png((200, 100)), "20,000 pixels; the limit is 10,000"),
                                 (b"text now", "not an image")):
            services.store.put_bytes(replaced, key, content_type="image/png")
            with pytest.raises(ImageRejected, match=reason):
                _first_frame(worker, payload)
        # a phone photo reaches the model upright: its EXIF orientation is applied
        exif = Image.Exif()
        exif[0x0112] = 6
        photo = io.BytesIO()
        Image.new("RGB", (96, 64), (90, 160, 40)).save(photo, format="JPEG", exif=exif)
        services.store.put_bytes(photo.getvalue(), key, content_type="image/jpeg")
        image, _ = _first_frame(worker, payload)
        assert image.size == (64, 96) and image.mode == "RGB"


@pytest.mark.usefixtures("aws_credentials")
def test_s3_first_frames_only_under_allowed_prefixes_and_checked(
        tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="frames")
    s3.put_object(Bucket="frames", Key="ok/hero.png", Body=_png())
    s3.put_object(Bucket="frames", Key="secret/exists.png", Body=_png())
    s3.put_object(Bucket="frames", Key="ok/text.png", Body=b"not an image")
    services = Services(load_settings({
        "MOVA_DATA_DIR": str(tmp_path), "S3_ENDPOINT_URL": s3_endpoint,
        "FIRST_FRAME_S3_PREFIXES": "s3://frames/ok/, s3://other/x"}))
    with services, session_scope(services.engine) as session:
        create_team(session, "emea")
    with services:
        answers = []
        for ref in ("s3://frames/secret/exists.png", "s3://frames/secret/missing.png",
                    "s3://frames/ok-not/x.png"):
            with pytest.raises(BriefInvalid) as err:
                submit(services, _with_first_frame(ref), team="emea")
            answers.append(err.value.problems[0][1])
        # outside the prefixes: one answer whether the object exists or not
        assert answers[0] == answers[1] == answers[2]
        assert "allowed prefix" in answers[0] and "exist" not in answers[0]
        with pytest.raises(BriefInvalid, match="does not exist"):
            submit(services, _with_first_frame("s3://frames/ok/missing.png"), team="emea")
        with pytest.raises(BriefInvalid, match="not an image"):
            submit(services, _with_first_frame("s3://frames/ok/text.png"), team="emea")
        assert submit(services, _with_first_frame("s3://frames/ok/hero.png"),
                      team="emea").created


def test_a_brief_over_the_approval_threshold_waits_for_an_operator(
        backend: pytest.FixtureRequest, tmp_path: Path) -> None:
    from mova_model.make_checkpoint import make_checkpoint
    from tasks.ingest import plan_brief

    checkpoint = make_checkpoint(tmp_path / "ckpt", preset="tiny", seed=0)
    with _services(tmp_path / "data", backend, APPROVAL_GPU_SECONDS="1.0",
                   MOVA_CHECKPOINT=str(checkpoint)) as services:
        cheap = submit(services, _brief(aspects=["16:9"]), team="emea")  # 0.8 GPU-s
        dear = submit(services, EXAMPLE, team="emea")  # 1.6 GPU-seconds > 1.0
        with session_scope(services.engine) as session:
            repo.claim_submitted_briefs(session, 10, "test")
        for submitted in (cheap, dear):
            plan = plan_brief(services, submitted.brief_id)
            assert plan is not None and plan.cost is not None
        with session_scope(services.engine) as session:
            assert repo.get_brief(session, cheap.brief_id).status == BriefStatus.PLANNED
            assert repo.get_brief(session, dear.brief_id).status == \
                BriefStatus.AWAITING_APPROVAL
            assert [b.id for b in repo.briefs_to_produce(session)] == [cheap.brief_id]
            assert repo.get_brief(session, dear.brief_id).plan.body["cost"]["gpu_seconds"] \
                == pytest.approx(EXAMPLE_GPU_SECONDS)
        with session_scope(services.engine) as session:
            repo.approve_budget(session, dear.brief_id)
        with session_scope(services.engine) as session:
            assert {b.id for b in repo.briefs_to_produce(session)} == {cheap.brief_id,
                                                                       dear.brief_id}


def _with_brand_kit(**kit: object) -> str:
    brief = yaml.safe_load(EXAMPLE)
    brief["brand_kit"] = {"colours": ["#101820"], "end_card_s": 1.0, **kit}
    return yaml.safe_dump(brief)


def _submitted_brand_kit(services: Services, folder: Path) -> BrandKit:
    """emea's brief with a logo and a font uploaded from `folder`: its stored brand kit."""
    from infra.fonts import font_files

    folder.mkdir()
    (folder / "logo.png").write_bytes(_png())
    (folder / "brand.ttf").write_bytes(font_files()["Noto Sans"].read_bytes())
    brief_id = submit(services, _with_brand_kit(logo="logo.png", font="brand.ttf"),
                      base_dir=folder, team="emea").brief_id
    with session_scope(services.engine) as session:
        kit = load_brief(repo.get_brief(session, brief_id).raw, fmt="json").brand_kit
    assert kit is not None and kit.font is not None
    return kit


def test_the_brand_kits_logo_and_font_are_uploaded_with_the_brief_under_the_teams_inputs(
        services: Services, tmp_path: Path) -> None:
    folder = tmp_path / "brief"
    kit = _submitted_brand_kit(services, folder)
    assert kit.logo.startswith("inputs/emea/") and kit.logo.endswith(".png")
    assert kit.font.startswith("inputs/emea/") and kit.font.endswith(".ttf")
    assert services.store.exists(kit.logo) and services.store.exists(kit.font)
    # what is not an image or a font is refused with the field's path, nothing stored
    (folder / "fake.png").write_bytes(b"not an image")
    (folder / "fake.ttf").write_bytes(b"not a font at all")
    with pytest.raises(BriefInvalid) as err:
        submit(services, _with_brand_kit(logo="fake.png", font="fake.ttf"), base_dir=folder,
               team="emea")
    assert [path for path, _ in err.value.problems] == ["brand_kit.logo", "brand_kit.font"]
    assert "not an image" in err.value.problems[0][1]
    assert "TrueType or OpenType" in err.value.problems[1][1]
    # another team's upload cannot be named
    with pytest.raises(BriefInvalid, match="not an upload of team apac"):
        submit(services, _with_brand_kit(logo=kit.logo), team="apac")


def test_a_stored_upload_is_checked_again_for_the_field_that_names_it(
        services: Services, tmp_path: Path) -> None:
    """A team's stored font named as a first frame, or its logo as the font, would pass the
    door and fail in production after GPU time; a malformed `inputs/` key is the client's
    error, not storage trouble."""
    folder = tmp_path / "brief"
    kit = _submitted_brand_kit(services, folder)
    with pytest.raises(BriefInvalid) as err:
        submit(services, _with_first_frame(kit.font), team="emea")
    assert err.value.problems == [("scenes[0].first_frame",
                                   f"{kit.font}: not an image (PNG, JPEG, WEBP expected)")]
    with pytest.raises(BriefInvalid, match="not a TrueType or OpenType font"):
        submit(services, _with_brand_kit(logo=kit.logo, font=kit.logo), team="emea")
    for bad in ("inputs/emea//x.png", f"{kit.logo}.meta.json", "inputs/emea/.tmp-x"):
        with pytest.raises(BriefInvalid) as err:
            submit(services, _with_first_frame(bad), team="emea")
        [(path, message)] = err.value.problems
        assert path == "scenes[0].first_frame" and bad in message, message
    # the same keys, each in its own field, still pass
    reuse = yaml.safe_load(_with_brand_kit(logo=kit.logo, font=kit.font))
    reuse["seed"] = 3
    assert submit(services, yaml.safe_dump(reuse), team="emea").created


def test_a_stored_upload_takes_its_suffix_from_its_content_not_its_name(
        services: Services, tmp_path: Path) -> None:
    """A 250-character suffix in a file name once became part of the storage key (a 500 on
    'File name too long'); a JPEG named .png was stored as .png."""
    folder = tmp_path / "brief"
    folder.mkdir()
    long_name = "a." + "x" * 250
    (folder / long_name).write_bytes(_png())
    jpeg = io.BytesIO()
    Image.new("RGB", (96, 64), (1, 2, 3)).save(jpeg, format="JPEG")
    (folder / "photo.png").write_bytes(jpeg.getvalue())
    brief = yaml.safe_load(_with_brand_kit(logo=long_name))
    brief["scenes"][0]["first_frame"] = "photo.png"
    brief_id = submit(services, yaml.safe_dump(brief), base_dir=folder, team="emea").brief_id
    with session_scope(services.engine) as session:
        stored = load_brief(repo.get_brief(session, brief_id).raw, fmt="json")
    assert stored.brand_kit is not None and stored.brand_kit.logo.endswith(".png")
    assert len(stored.brand_kit.logo) == len("inputs/emea/") + 64 + len(".png")
    assert stored.scenes[0].first_frame is not None
    assert stored.scenes[0].first_frame.endswith(".jpg")


def test_a_refusal_for_the_daily_budget_stores_no_upload_and_says_when_to_retry(
        backend: pytest.FixtureRequest, tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    folder = tmp_path / "brief"
    folder.mkdir()
    (folder / "hero.png").write_bytes(_png())
    budget = EXAMPLE_GPU_SECONDS + 0.5  # one example brief (1.6), not two
    with _services(tmp_path / "data", backend, API_SUBMISSIONS_PER_MINUTE="100",
                   TEAM_GPU_SECONDS_PER_DAY=str(budget)) as services:
        assert submit(services, EXAMPLE, team="emea").created
        with pytest.raises(SubmissionRefused) as err:
            submit(services, _with_first_frame("hero.png"), base_dir=folder, team="emea")
        assert "has used 1.6 of its 2.1 GPU-seconds today; this brief needs 1.6" \
            in str(err.value), err.value
        now = datetime.now(UTC)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        assert abs(err.value.retry_after_s - (midnight - now).total_seconds()) < 60
        assert services.store.list("inputs/") == []
        # a brief that could not fit even an unused day is invalid, not "try again later"
        big = yaml.safe_load(EXAMPLE)
        big["scenes"].append({**big["scenes"][0], "scene_id": "two"})  # 8 renders, 3.2
        with pytest.raises(BriefInvalid, match="more than a team's whole daily budget of 2.1"):
            submit(services, json.dumps(big), fmt="json", team="apac")


def test_an_idempotency_key_sent_with_another_brief_is_a_conflict(services: Services) -> None:
    from tasks.submission import IdempotencyConflict

    first = submit(services, _brief(seed=7), team="emea", idempotency_key="order-42")
    again = submit(services, _brief(seed=7), team="emea", idempotency_key="order-42")
    assert first.created and not again.created and again.brief_id == first.brief_id
    with pytest.raises(IdempotencyConflict, match=f"order-42.*{first.brief_id}"):
        submit(services, _brief(seed=8), team="emea", idempotency_key="order-42")
    assert _stored_briefs(services, "emea") == 1
    # the key is the team's own: another team's same key is another brief
    assert submit(services, _brief(seed=8), team="apac", idempotency_key="order-42").created


def test_a_failed_brief_sent_again_is_produced_again(services: Services) -> None:
    """Returning the dead brief would leave a team no way to retry but editing the brief."""
    first = submit(services, EXAMPLE, team="emea")
    with session_scope(services.engine) as session:
        repo.get_brief(session, first.brief_id).status = BriefStatus.FAILED
    again = submit(services, EXAMPLE, team="emea")
    assert again.created and again.brief_id != first.brief_id
    assert submit(services, EXAMPLE, team="emea").brief_id == again.brief_id


def test_an_end_card_text_too_long_for_a_format_is_refused_at_submission(
        services: Services, tmp_path: Path) -> None:
    """The schema allows 2000 characters of legal text; at 9:16 about 600 no longer fit the
    card's lines, which failed the spot only after its scenes had rendered."""
    folder = tmp_path / "brief"
    folder.mkdir()
    (folder / "logo.png").write_bytes(_png())
    legal = {"en-US": "Terms and conditions apply. " * 22, "de-DE": "Es gelten die AGB."}
    with pytest.raises(BriefInvalid) as err:
        submit(services, _with_brand_kit(logo="logo.png", legal=legal), base_dir=folder,
               team="emea")
    [(path, message)] = err.value.problems
    assert path == "brand_kit.legal.en-US" and "end card text for en-US does not fit" in message
    assert "(the 9:16 end card)" in message
    assert services.store.list("inputs/") == [] and _stored_briefs(services, "emea") == 0
    legal["en-US"] = "Terms and conditions apply."
    assert submit(services, _with_brand_kit(logo="logo.png", legal=legal), base_dir=folder,
                  team="emea").created


def test_end_card_colours_without_contrast_are_refused_at_submission(
        services: Services, tmp_path: Path) -> None:
    """#000000 text on #000000 was published: a black end card with nothing readable."""
    folder = tmp_path / "brief"
    folder.mkdir()
    (folder / "logo.png").write_bytes(_png())
    brief = yaml.safe_load(_with_brand_kit(logo="logo.png"))
    brief["brand_kit"]["colours"] = ["#000000", "#000000"]
    with pytest.raises(BriefInvalid) as err:
        submit(services, yaml.safe_dump(brief), base_dir=folder, team="emea")
    assert err.value.problems == [("brand_kit.colours", "#000000 text on #000000 has a contrast "
                                   "of 1.0:1; the end card's text needs at least 3:1 (WCAG, "
                                   "large text)")]
    brief["brand_kit"]["colours"] = ["#000000"]  # one colour: the text takes black or white
    assert submit(services, yaml.safe_dump(brief), base_dir=folder, team="emea").created


def test_dialogue_that_cannot_be_captioned_in_its_scene_is_refused(services: Services) -> None:
    """A 480-character line in a 1 s scene vanished from the captions, and the spot was
    published: each caption cue stays a second on screen."""
    brief = yaml.safe_load(EXAMPLE)
    scene = brief["scenes"][0]
    scene["duration_s"] = 1.0
    scene["dialogue"]["en-US"] = [{"speaker": "Ava", "text": "word " * 96}]
    with pytest.raises(BriefInvalid) as err:
        submit(services, yaml.safe_dump(brief), team="emea")
    [(path, message)] = err.value.problems
    assert path == "scenes[0].dialogue.en-US"
    assert message.startswith("6 caption cues") and "a 1 s scene shows 1" in message
    scene["dialogue"]["en-US"] = [{"speaker": "Ava", "text": "One short line."}]
    assert submit(services, yaml.safe_dump(brief), team="emea").created


def test_burned_in_text_that_cannot_be_drawn_is_refused_and_nothing_is_stored(
        services: Services) -> None:
    """Ethiopic (no packaged font has it) was published as empty boxes, and a word too long
    to wrap failed the spot's QC only after its renders: both are refused at the door, naming
    the field."""
    brief = yaml.safe_load(EXAMPLE)
    scene = brief["scenes"][0]
    scene["dialogue"]["en-US"][0]["text"] = "Every morning starts with ሰላም."
    scene["on_screen_text"]["de-DE"]["brand_line"] = "Laufschuhgesellschaftsneuheitenpräsentation"
    with pytest.raises(BriefInvalid) as err:
        submit(services, yaml.safe_dump(brief, allow_unicode=True), team="emea")
    problems = dict(err.value.problems)
    assert set(problems) == {"scenes[0].dialogue.en-US[0].text", "scenes[0].on_screen_text.de-DE"}
    assert "'ሰ' (U+1230)" in problems["scenes[0].dialogue.en-US[0].text"]
    assert "safe zone of the 9:16 spot" in problems["scenes[0].on_screen_text.de-DE"]
    assert _stored_briefs(services, "emea") == 0
    scene["dialogue"]["en-US"][0]["text"] = "Every morning starts with one step."
    scene["on_screen_text"]["de-DE"]["brand_line"] = "Laufschuh-Neuheit"
    assert submit(services, yaml.safe_dump(brief, allow_unicode=True), team="emea").created


def _first_frame_refused(services: Services, folder: Path, name: str) -> str:
    """The one problem of a brief whose first frame is `name` in `folder`; nothing stored."""
    with pytest.raises(BriefInvalid) as err:
        submit(services, _with_first_frame(name), base_dir=folder, team="emea")
    [(field, message)] = err.value.problems
    assert field == "scenes[0].first_frame"
    assert services.store.list("inputs/") == []
    return message


def test_a_first_frame_with_black_bars_is_refused_but_a_product_on_black_is_not(
        services: Services, tmp_path: Path) -> None:
    """A letterboxed still made a render that kept its bars, which QC then fails on every
    seed: refused at the door. A product shot on a black background has no bars."""
    folder = tmp_path / "brief"
    folder.mkdir()
    rng = np.random.default_rng(0)
    letterboxed = rng.integers(40, 220, (360, 640, 3), dtype=np.uint8)
    letterboxed[:40] = letterboxed[-40:] = 0
    product = np.zeros((360, 640, 3), np.uint8)
    product[90:270, 200:440] = (220, 60, 30)
    for name, pixels in (("letterboxed.png", letterboxed), ("product.png", product)):
        Image.fromarray(pixels).save(folder / name)
    assert _first_frame_refused(services, folder, "letterboxed.png") == (
        "letterboxed.png: the picture has black bars (top 40 px, bottom 40 px); the render "
        "would keep them, and QC fails a deliverable with bars: crop them off")
    assert submit(services, _with_first_frame("product.png"), base_dir=folder,
                  team="emea").created


@pytest.mark.parametrize(("size", "reason"), [
    ((1, 1), "the picture is 1x1 px; a first frame needs at least 64 px on each side"),
    ((2000, 2), "the picture is 2000x2 px; a first frame needs at least 64 px on each side"),
    ((1000, 64), "the picture is 1000x64 px, 16 times as long as it is wide; a first frame is "
                 "at most 4:1 (each format crops it to its own shape): crop it nearer to the "
                 "scene's"),
])
def test_a_first_frame_too_small_or_too_long_to_start_a_scene_from_is_refused(
        services: Services, tmp_path: Path, size: tuple[int, int], reason: str) -> None:
    # a 1x1 or 2x2000 picture was accepted and stretched over every format's whole frame
    folder = tmp_path / "brief"
    folder.mkdir()
    (folder / "sliver.png").write_bytes(_png(size))
    assert _first_frame_refused(services, folder, "sliver.png") == f"sliver.png: {reason}"


def test_a_first_frame_with_transparent_pixels_is_refused_but_a_logo_may_have_them(
        services: Services, tmp_path: Path) -> None:
    """A product cut-out on a transparent background was rendered from whatever colour lay
    under its alpha (black here): the scene's background cannot be guessed."""
    folder = tmp_path / "brief"
    folder.mkdir()
    cutout = Image.new("RGBA", (128, 96), (0, 0, 0, 0))
    cutout.paste((220, 60, 30, 255), (32, 24, 96, 72))
    buffer = io.BytesIO()
    cutout.save(buffer, format="PNG")
    (folder / "cutout.png").write_bytes(buffer.getvalue())
    assert _first_frame_refused(services, folder, "cutout.png") == (
        "cutout.png: 75% of the picture is transparent; a first frame is the whole picture "
        "the scene starts from: flatten it onto the background the scene should have")
    (folder / "logo.png").write_bytes(buffer.getvalue())  # the end card draws a logo's alpha
    assert submit(services, _with_brand_kit(logo="logo.png"), base_dir=folder,
                  team="emea").created

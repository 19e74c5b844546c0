"""LoRAs in production: `mova-ads lora add/list`, briefs naming them (unknown names refused at
submission), the plan's render key, and a render whose clip, manifest and lineage carry the
LoRA's name, SHA-256 and scale. Real SQLite and local storage; the tiny checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from typer.testing import CliRunner

from app.auth import create_team
from app.cli import app
from infra import repository as repo
from infra.db import session_scope
from infra.settings import load_settings
from schemas.errors import BriefInvalid
from schemas.plan import LoraSpec, Plan, RenderSpec
from tasks.ingest import plan_brief
from tasks.lora import LoraRejected, fetch_lora, files_digest, register_lora
from tasks.render import load_render_model, pending_payloads, render_on_worker
from tasks.services import Services
from tasks.submission import submit_brief
from tests.example_brief import example_text
from tests.mova_model.test_lora import CONFIG, make_factors, write_lora
from tests.tasks.in_process import finish_and_publish, render_all

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load(example_text())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mova_model.make_checkpoint import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", preset="tiny", seed=0)


@pytest.fixture
def env(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"MOVA_DATA_DIR": str(tmp_path / "data"), "MOVA_CHECKPOINT": str(checkpoint)}
    for name, value in values.items():
        monkeypatch.setenv(name, value)  # the CLI reads the environment
    return values


def _brief(lora: dict[str, object] | None = None, scene_lora: dict[str, object] | None = None
           ) -> str:
    """The example reduced to one render (one locale, one aspect), with the LoRAs given."""
    brief = json.loads(json.dumps(EXAMPLE))
    brief.update(locales=["en-US"], aspects=["16:9"], platforms=["youtube"])
    for field in ("dialogue", "on_screen_text"):
        brief["scenes"][0][field] = {"en-US": brief["scenes"][0][field]["en-US"]}
    if lora is not None:
        brief["lora"] = lora
    if scene_lora is not None:
        brief["scenes"][0]["lora"] = scene_lora
    return yaml.safe_dump(brief)


def _says(output: str, text: str) -> bool:
    """`text` is in the CLI output, however the console wrapped its lines."""
    return "".join(text.split()) in "".join(output.split())


def _plan(services: Services, brief_id: UUID) -> Plan:
    with session_scope(services.engine) as session:
        repo.claim_submitted_briefs(session, 10, "test")
    plan = plan_brief(services, brief_id)
    assert plan is not None
    return plan


def test_lora_add_copies_the_files_and_records_name_and_digest(env: dict[str, str],
                                                               tmp_path: Path) -> None:
    folder = write_lora(tmp_path / "mascot", make_factors(), CONFIG)
    runner = CliRunner()
    added = runner.invoke(app, ["lora", "add", "mascot", str(folder)])
    assert added.exit_code == 0, added.output
    files = {name: {"sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()}
             for name in ("lora_weights.pt", "lora_config.pt")}
    digest = files_digest(files)
    assert digest in added.output
    prefix = f"loras/_local/mascot/{digest}/"
    with Services(load_settings(env)) as services:
        assert sorted(services.store.list(prefix)) == [prefix + "lora_config.pt",
                                                       prefix + "lora_weights.pt"]
        copy = services.store.get_file(prefix + "lora_weights.pt", tmp_path / "copy.pt")
    assert copy.read_bytes() == (folder / "lora_weights.pt").read_bytes()
    listed = runner.invoke(app, ["lora", "list"])
    assert listed.exit_code == 0 and f"mascot  sha256 {digest}" in listed.output
    # the same files again: nothing new; other files under the same name: refused
    again = runner.invoke(app, ["lora", "add", "mascot", str(folder)])
    assert again.exit_code == 0 and _says(again.output, "registered before with the same files")
    other = write_lora(tmp_path / "other", make_factors(seed=1), CONFIG)
    taken = runner.invoke(app, ["lora", "add", "mascot", str(other)])
    assert taken.exit_code == 2 and _says(taken.output, "registered with other files")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "lora_weights.pt").write_bytes(b"not torch")
    refused = runner.invoke(app, ["lora", "add", "broken", str(broken)])
    assert refused.exit_code == 2 and _says(refused.output, "lora_weights.pt: not a tensor-only")
    # both weights files: a render reads only the .pt, the other was stored unchecked
    both = write_lora(tmp_path / "both", make_factors(seed=3), CONFIG)
    (both / "lora_weights.safetensors").write_bytes(b"not checked" * 1000)
    refused = runner.invoke(app, ["lora", "add", "both", str(both)])
    assert refused.exit_code == 2 and _says(refused.output, "holds both lora_weights.pt and")
    with Services(load_settings(env)) as services, session_scope(services.engine) as session:
        assert [r.name for r in repo.team_loras(session, "_local")] == ["mascot"]


@pytest.mark.parametrize(("name", "team", "says"), [
    ("mascot\n", None, "must be a slug"),  # re.match let a trailing newline through
    ("mascot", "nosuchteam", "no team 'nosuchteam'"),
    ("mascot", "..", "no team '..'"),  # was a traceback from the storage key
])
def test_lora_add_refuses_a_name_no_brief_can_use_and_an_unknown_team(
        env: dict[str, str], tmp_path: Path, name: str, team: str | None, says: str) -> None:
    folder = write_lora(tmp_path / "mascot", make_factors(), CONFIG)
    result = CliRunner().invoke(app, ["lora", "add", name, str(folder),
                                      *(["--team", team] if team else [])])
    assert result.exit_code == 2 and _says(result.output, says), result.output
    assert "Traceback" not in result.output
    with Services(load_settings(env)) as services:
        assert services.store.list("loras/") == []


def test_lora_add_stores_the_files_it_checked_when_the_folder_changes_meanwhile(
        env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # another process rewrites the weights after the check (the real check runs, then the
    # folder changes): what is stored and recorded is the checked file, not the new one
    import mova_model.lora
    from mova_model.lora import read_lora

    folder = write_lora(tmp_path / "mascot", make_factors(), CONFIG)
    checked = (folder / "lora_weights.pt").read_bytes()

    def check_then_rewrite(path: Path) -> object:
        result = read_lora(path)
        (folder / "lora_weights.pt").write_bytes(b"rewritten after the check")
        return result
    monkeypatch.setattr(mova_model.lora, "read_lora", check_then_rewrite)
    with Services(load_settings(env)) as services:
        done = register_lora(services, "_local", "mascot", folder)
        stored = services.store.get_file(f"loras/_local/mascot/{done.sha256}/lora_weights.pt",
                                         tmp_path / "stored.pt")
    assert stored.read_bytes() == checked
    assert done.files["lora_weights.pt"]["sha256"] == hashlib.sha256(checked).hexdigest()


def test_lora_add_refuses_a_file_far_over_a_lora_s_size_unread(env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    # a whole checkpoint renamed lora_weights.pt was read into memory whole before any check
    folder = write_lora(tmp_path / "mascot", make_factors(), CONFIG)
    weights = next(folder.glob("lora_weights.*"))
    with weights.open("r+b") as sparse:  # 5 GiB on the disk's books, nothing written
        sparse.truncate(5 * 2**30)
    result = CliRunner().invoke(app, ["lora", "add", "mascot", str(folder)])
    assert result.exit_code == 2 and _says(
        result.output, f"error: {weights} is 5.0 GiB, over the 4 GiB a LoRA file may be "
                       "(a whole checkpoint?)"), result.output
    with Services(load_settings(env)) as services:
        assert services.store.list("loras/") == []


def test_unknown_lora_names_are_rejected_at_submission(env: dict[str, str],
                                                       tmp_path: Path) -> None:
    brief = tmp_path / "brief.yaml"
    brief.write_text(_brief(lora={"name": "nobody"}, scene_lora={"name": "ghost", "scale": 0.5}))
    result = CliRunner().invoke(app, ["submit", str(brief)])
    assert result.exit_code == 1
    assert _says(result.output, "lora.name: no LoRA named 'nobody' is registered for team _local")
    assert _says(result.output, "scenes[0].lora.name: no LoRA named 'ghost'")
    with Services(load_settings(env)) as services:
        folder = write_lora(tmp_path / "ghost", make_factors(), CONFIG)
        with session_scope(services.engine) as session:
            create_team(session, "emea")
        register_lora(services, "emea", "ghost", folder)  # another team's LoRA is not ours
        with pytest.raises(BriefInvalid) as caught:
            submit_brief(services, _brief(lora={"name": "ghost"}))
        assert caught.value.problems[0][0] == "lora.name"
        with session_scope(services.engine) as session:
            assert not repo.campaign_briefs(session, None), "a refused brief was stored"


def test_the_render_key_carries_the_lora_and_its_scale(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    with Services(load_settings(env)) as services:
        register_lora(services, "_local", "mascot",
                      write_lora(tmp_path / "mascot", make_factors(), CONFIG))
        plans = [_plan(services, submit_brief(services, _brief(lora=lora)))
                 for lora in (None, {"name": "mascot"}, {"name": "mascot", "scale": 0.5})]
        with session_scope(services.engine) as session:
            digest = repo.team_lora(session, "_local", "mascot").sha256  # type: ignore[union-attr]
    plain, full, half = (p.renders[0] for p in plans)
    assert plain.lora is None
    assert full.lora is not None and full.lora.sha256 == digest and full.lora.scale == 1.0
    assert len({plain.key, full.key, half.key}) == 3
    assert RenderSpec.model_validate(full.model_dump(mode="json")).key == full.key


@pytest.mark.slow
def test_a_lora_render_records_name_digest_and_scale_in_clip_manifest_and_lineage(
        env: dict[str, str], tmp_path: Path) -> None:
    with Services(load_settings(env)) as services:
        registered = register_lora(services, "_local", "mascot",
                                   write_lora(tmp_path / "mascot", make_factors(), CONFIG))
        brief_id = submit_brief(services, _brief(scene_lora={"name": "mascot", "scale": 0.5}))
        _plan(services, brief_id)
        [payload] = pending_payloads(services, brief_id)
        model = load_render_model(services.settings.model_dump_json())
        # the actor holds the LoRA after its first render and does not load it again
        first = render_on_worker(model, payload)
        held = model.pipeline.lora
        assert held is not None and model.lora_sha256 == registered.sha256
        second = render_on_worker(model, payload)
        assert model.pipeline.lora is held, "the LoRA was loaded again for the same actor"
        assert first["sha256"] == second["sha256"]
        render_all(services, brief_id)
        [row] = finish_and_publish(services, brief_id)
        assert row.published_uri is not None and row.manifest_uri is not None
        manifest = json.loads(Path(row.manifest_uri.removeprefix("file://")).read_text())
        with session_scope(services.engine) as session:
            chain = repo.lineage_chain(session, row.video_artifact_id)  # type: ignore[arg-type]
            clips = [a for _, a in chain if a.kind == "clip"]
            clip_params = clips[0].params
    expected = {"name": "mascot", "sha256": registered.sha256, "scale": 0.5}
    render = manifest["render"]
    assert {k: render["lora"][k] for k in expected} == expected
    assert render["lora"]["scaling"] == 0.25  # alpha 8 / rank 16 * 0.5
    assert render["attention_backend"] == "sdpa"
    assert clip_params["spec"]["lora"] == expected
    assert clip_params["generation"]["lora"]["sha256"] == registered.sha256


def test_a_lora_the_checkpoint_cannot_take_or_gone_from_storage_fails_planning(
        env: dict[str, str], tmp_path: Path) -> None:
    """A LoRA made for another model size (here 5120 wide, MOVA's video tower, on tiny's 96)
    was planned and then failed every render in the actors; one whose files were deleted from
    storage likewise. Both now make the brief invalid when it is planned, naming the LoRA."""
    import torch

    other_size = {"video_dit.blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 5120),
                  "video_dit.blocks.0.self_attn.q.lora_B.weight": torch.zeros(5120, 4)}
    big = write_lora(tmp_path / "big", other_size, CONFIG)
    with Services(load_settings(env)) as services:
        # where the checkpoint is at hand, registering it is refused at once
        with pytest.raises(LoraRejected) as refused:
            register_lora(services, "_local", "big", big)
        assert str(refused.value).startswith(f"does not fit checkpoint {env['MOVA_CHECKPOINT']} "
                                             "(MOVA_CHECKPOINT): ")
        assert "is Linear(96, 96); expected A (4, 96)" in str(refused.value)
    # an operator's host without the model registers it; planning, where the model is, refuses
    elsewhere = {**env, "MOVA_CHECKPOINT": str(tmp_path / "not-on-this-host")}
    with Services(load_settings(elsewhere)) as services:
        register_lora(services, "_local", "big", big)
    with Services(load_settings(env)) as services:
        gone = register_lora(services, "_local", "gone",
                             write_lora(tmp_path / "gone", make_factors(seed=2), CONFIG))
        for key in services.store.list(f"loras/_local/gone/{gone.sha256}/"):
            Path(services.store.local_path(key)).unlink()  # type: ignore[arg-type]
        fits = register_lora(services, "_local", "mascot",
                             write_lora(tmp_path / "mascot", make_factors(), CONFIG))
        ids = [submit_brief(services, _brief(lora={"name": name}, scene_lora=scene))
               for name, scene in (("big", None), ("mascot", {"name": "gone"}),
                                   ("mascot", None))]
        with session_scope(services.engine) as session:
            repo.claim_submitted_briefs(session, 10, "test")
        plans = [plan_brief(services, brief_id) for brief_id in ids]
        with session_scope(services.engine) as session:
            problems = [repo.get_brief(session, brief_id).problems for brief_id in ids]
    assert plans[0] is None and plans[1] is None
    [[path, message]] = problems[0]
    assert path == "lora.name"
    assert message.startswith("LoRA 'big' cannot be applied to checkpoint tiny: ")
    assert "is Linear(96, 96); expected A (4, 96)" in message
    [[path, message]] = problems[1]
    assert path == "scenes[0].lora.name"
    assert "'gone'" in message and "no files in storage" in message
    assert plans[2] is not None and plans[2].renders[0].lora is not None
    assert plans[2].renders[0].lora.sha256 == fits.sha256


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_damaged_cached_copy_is_fetched_again(env: dict[str, str], tmp_path: Path,
                                                damage: str) -> None:
    """A host's cached LoRA with a file deleted or changed was used as it was: every render of
    that LoRA on the host failed (or ran other weights) until someone removed the folder."""
    from mova_model.lora import read_lora

    with Services(load_settings(env)) as services:
        registered = register_lora(services, "_local", "mascot",
                                   write_lora(tmp_path / "mascot", make_factors(), CONFIG))
        spec = LoraSpec(name="mascot", sha256=registered.sha256, scale=1.0)
        cache = tmp_path / "cache"
        weights = fetch_lora(services.store, spec, cache) / "lora_weights.pt"
        original = weights.read_bytes()
        if damage == "deleted":
            weights.unlink()
        else:
            weights.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        folder = fetch_lora(services.store, spec, cache)
    assert (folder / "lora_weights.pt").read_bytes() == original
    assert read_lora(folder).num_layers == 4
    assert sorted(p.name for p in cache.iterdir()) == [registered.sha256]  # nothing left over



@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_one_name_registered_by_several_operators_at_once_is_one_lora(
        env: dict[str, str], tmp_path: Path, backend: str, request: pytest.FixtureRequest
        ) -> None:
    """Two `lora add` of one name at the same moment: the later insert hit the unique name and
    its operator saw an IntegrityError traceback. Now one registers it, the others find it (or
    are told the name holds other files)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    values = dict(env)
    if backend == "postgres":
        request.getfixturevalue("postgres_engine")  # migrated; emptied after the test
        values["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    same = write_lora(tmp_path / "same", make_factors(), CONFIG)
    other = write_lora(tmp_path / "other", make_factors(seed=5), CONFIG)
    start = threading.Barrier(4)
    with Services(load_settings(values)) as services:
        def add(folder: Path) -> str:
            start.wait()
            try:
                return "created" if register_lora(services, "_local", "mascot",
                                                  folder).created else "found"
            except LoraRejected as err:
                return "other files" if "registered with other files" in str(err) else str(err)

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(add, [same, same, same, other]))
        with session_scope(services.engine) as session:
            stored = repo.team_lora(session, "_local", "mascot")
    assert stored is not None and outcomes.count("created") == 1, outcomes
    if outcomes[3] == "created":  # the other files won the race: the same ones are refused
        assert outcomes[:3] == ["other files"] * 3
    else:
        assert sorted(outcomes[:3]) == ["created", "found", "found"]
        assert outcomes[3] == "other files"

"""`mova-ads` as a new user meets it: an error naming what was typed, never a traceback, and
a run after `make demo` (which renders with the demo model) that has a model to render with."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from app.cli import ensure_checkpoint
from infra.settings import load_settings
from tests.app.conftest import ROOT


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("PREFECT_", "MOVA_", "OPENLINEAGE_"))}
    base.update(MOVA_DATA_DIR=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                PYTHONPATH=str(ROOT), COLUMNS="200", **env)
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=base, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def _run_command(monkeypatch: pytest.MonkeyPatch, *args: str) -> int | str | None:
    """`mova-ads ARGS` in this process; what it sets in the environment for Prefect is undone
    after the test."""
    from app.cli import run_command

    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    monkeypatch.setattr(sys, "argv", ["mova-ads", *args])
    return run_command()


def _in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """The CLI run in this process (typer's runner, no interpreter start) on a SQLite database
    and data folder of the test's own; returns `cli(*args)`."""
    from app.cli import app

    monkeypatch.setenv("MOVA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_a_bad_setting_whose_message_has_brackets_is_one_line(tmp_path: Path) -> None:
    # The message names the expected form `http(s)://host[:port][/path]`: read as markup, its
    # `[/path]` was a closing tag and the user got a MarkupError traceback.
    done = _cli(tmp_path, "status", OPENLINEAGE_URL="marquez:5000")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "OPENLINEAGE_URL" in done.stderr
    assert "http(s)://host[:port][/path]" in done.stderr


@pytest.mark.parametrize("args", [("lineage", "[/x]"), ("submit", "draft[/v2].yaml"),
                                  ("team", "token", "revoke", "[/x]")])
def test_what_the_user_typed_is_printed_as_typed(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = _cli(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "MarkupError" not in done.stderr
    assert args[-1] in done.stderr


def test_the_default_tiny_checkpoint_is_made_when_absent(tmp_path: Path) -> None:
    # `make demo` renders with assets/demo-model and leaves no default checkpoint: `serve`'s
    # worker (`mova-ads run`) then failed every brief on the missing model_index.json.
    settings = load_settings({"MOVA_DATA_DIR": str(tmp_path)})
    ensure_checkpoint(settings)
    assert (tmp_path / "checkpoints" / "tiny" / "model_index.json").is_file()


def test_a_configured_checkpoint_that_is_missing_is_named(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    missing = tmp_path / "MOVA-720p"
    settings = load_settings({"MOVA_DATA_DIR": str(tmp_path), "MOVA_CHECKPOINT": str(missing)})
    with pytest.raises(typer.Exit) as raised:
        ensure_checkpoint(settings)
    assert raised.value.exit_code == 2
    assert not missing.exists()  # not filled with random weights
    said = " ".join(capsys.readouterr().err.split())
    assert f"MOVA_CHECKPOINT={missing} is not a MOVA checkpoint folder (no such folder)" in said
    missing.mkdir()  # a folder without the model in it says so
    with pytest.raises(typer.Exit):
        ensure_checkpoint(settings)
    assert "(it has no model_index.json)" in " ".join(capsys.readouterr().err.split())


def test_an_empty_list_says_so_and_a_mistyped_team_is_named(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    # An operator checking `brief pending` or `lora list` got no output at all: nothing waiting,
    # a team with no LoRAs and a team name typed wrong looked the same (and like a hang).
    cli = _in_process(tmp_path, monkeypatch)
    said = {args: cli(*args) for args in
            [("team", "list"), ("team", "token", "list"), ("brief", "pending"), ("lora", "list")]}
    assert {args: (done.exit_code, " ".join(done.output.split()))
            for args, done in said.items()} == {
        ("team", "list"): (0, "no teams yet ('mova-ads team create NAME' adds one)"),
        ("team", "token", "list"): (0, "no teams yet ('mova-ads team create NAME' adds one)"),
        ("brief", "pending"): (0, "no brief waits for approval"),
        ("lora", "list"): (0, "no LoRAs registered for briefs without a team "
                              "('mova-ads lora add' registers one)"),
    }
    assert cli("team", "create", "acme").exit_code == 0
    acme = cli("lora", "list", "--team", "acme")
    assert acme.exit_code == 0 and "no LoRAs registered for team acme" in acme.output
    typo = cli("lora", "list", "--team", "acme-typo")
    assert typo.exit_code == 2 and "no team 'acme-typo'" in typo.output


def test_a_file_too_large_to_be_a_brief_is_refused_unread(tmp_path: Path) -> None:
    # `mova-ads submit spot.mp4` by mistake: the whole file was read before the size check
    video = tmp_path / "spot.mp4"
    with video.open("wb") as file:
        file.truncate(6 * 2**30)  # sparse: read whole it takes 6 GiB of memory
    done = _cli(tmp_path, "submit", str(video))
    assert done.returncode == 1, done.stderr
    assert " ".join(done.stderr.split()) == (
        f"{video} was rejected: it is {6 * 2**30:,} bytes; the limit is 1,000,000")


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_run_refuses_a_limit_below_one(limit: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # `run --limit -1` produced every waiting brief on SQLite (LIMIT -1 is none there) and
    # failed on PostgreSQL; `--limit 0` started Ray and the model to claim nothing.
    cli = _in_process(tmp_path, monkeypatch)
    done = cli("run", "--limit", limit)
    assert done.exit_code == 2, done.output
    assert "--limit" in done.output


def test_a_database_file_that_is_no_database_is_one_paragraph(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    # DATABASE_URL naming another file (a backup archive, a text file) was SQLAlchemy's
    # DatabaseError traceback: only its OperationalError was caught.
    other = tmp_path / "notes.db"
    other.write_text("not a database\n" * 100)
    monkeypatch.setenv("MOVA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{other}")
    assert _run_command(monkeypatch, "team", "list") == 1
    assert " ".join(capsys.readouterr().err.split()) == (
        f"error: the database cannot be used: file is not a database DATABASE_URL is "
        f"sqlite:///{other}; check that the URL names a mova-ads database file, in a folder "
        "you can write")


def _migrated_then(url: str, statement: str, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The database at `url` migrated, then changed by `statement`; the CLI pointed at it."""
    from sqlalchemy import text

    from infra.db import make_engine, upgrade_to_head

    engine = make_engine(url)
    upgrade_to_head(engine)
    with engine.begin() as connection:
        connection.execute(text(statement))
    engine.dispose()
    monkeypatch.setenv("MOVA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("DATABASE_URL", url)


def test_a_database_of_a_newer_version_is_named_not_a_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    # Going back to an older mova-ads on a database the newer one migrated: every command was
    # alembic's "Can't locate revision" traceback.
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    _migrated_then(url, "UPDATE alembic_version SET version_num = '0099_future'", tmp_path,
                   monkeypatch)
    assert _run_command(monkeypatch, "team", "list") == 1
    assert " ".join(capsys.readouterr().err.split()) == (
        "error: the database cannot be migrated: Can't locate revision identified by "
        f"'0099_future' DATABASE_URL is {url}; a newer mova-ads has migrated it (run that "
        "one), or it is another program's database")


def test_team_local_is_the_default_owner_not_an_unknown_team(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    # The README names `_local` as --team's default: `lora add --team _local` took it, but
    # `lora list --team _local` said "no team '_local'" and `submit --team _local` advised
    # `mova-ads team create _local`, which refuses the name.
    cli = _in_process(tmp_path, monkeypatch)
    listed = cli("lora", "list", "--team", "_local")
    assert (listed.exit_code, " ".join(listed.output.split())) == (
        0, "no LoRAs registered for briefs without a team ('mova-ads lora add' registers one)")
    first = cli("submit", str(ROOT / "examples" / "brief.yaml"))
    again = cli("submit", str(ROOT / "examples" / "brief.yaml"),
                                "--team", "_local")
    assert first.exit_code == 0 and again.exit_code == 0, again.output
    assert "was submitted before; not submitted again" in again.output  # the same owner


def test_a_data_dir_that_cannot_be_written_is_named(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # Another user's folder (or a read-only disk) as MOVA_DATA_DIR: every command was a
    # PermissionError traceback, raised while Prefect's home was made in it.
    def refused(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    data_dir = tmp_path / "theirs"
    monkeypatch.setenv("MOVA_DATA_DIR", str(data_dir))
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.setattr(Path, "mkdir", refused)
    assert _run_command(monkeypatch, "team", "list") == 2
    assert " ".join(capsys.readouterr().err.split()) == (
        f"error: invalid configuration: MOVA_DATA_DIR: {data_dir} cannot be used: "
        f"{data_dir.resolve() / 'prefect'} cannot be made (Permission denied)")


def test_lora_add_names_a_folder_that_is_missing_or_a_file(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    # A mistyped folder, or the weights file itself, was told "expected lora_weights.pt or
    # lora_weights.safetensors in the folder" (given lora_weights.pt, that reads as nonsense).
    cli = _in_process(tmp_path, monkeypatch)
    weights = tmp_path / "mascot" / "lora_weights.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    said = {str(path): cli("lora", "add", "mascot", str(path))
            for path in (weights, tmp_path / "mascto")}
    assert {path: (done.exit_code, " ".join(done.output.split()))
            for path, done in said.items()} == {
        str(weights): (2, f"error: {weights} is a file: give the folder that holds it, "
                          f"{weights.parent}"),
        str(tmp_path / "mascto"): (2, f"error: no folder {tmp_path / 'mascto'}"),
    }


@pytest.mark.parametrize("port", ["99999", "0", "-1"])
def test_serve_refuses_a_port_out_of_range(port: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # `serve --port 99999` said "review service on http://127.0.0.1:99999/", then printed
    # uvicorn's 130-line OverflowError traceback; 0 would listen on a port it does not name.
    cli = _in_process(tmp_path, monkeypatch)
    done = cli("serve", "--no-worker", "--port", port)
    assert done.exit_code == 2, done.output
    assert "--port" in done.output and "review service on" not in done.output


def test_serve_on_a_port_in_use_or_an_address_not_here_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    # uvicorn logged "[Errno 98] error while attempting to bind" and exited 3, after saying
    # "review service on ..." and starting the embedded worker
    monkeypatch.setenv("MOVA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert _run_command(monkeypatch, "serve", "--no-worker", "--port", str(port)) == 1
    said = capsys.readouterr().err
    assert " ".join(said.split()) == (f"error: cannot listen on 127.0.0.1 port {port}: it is in "
                                      "use (another service, or this one running already): "
                                      "choose another with --port")
    assert _run_command(monkeypatch, "serve", "--no-worker", "--host", "192.0.2.1") == 1
    assert "192.0.2.1 is not an address of this machine" in capsys.readouterr().err


def test_serve_on_an_s3_bucket_that_does_not_exist_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        s3_endpoint: str, aws_credentials: None) -> None:
    # it was created on first use, so a misspelt STORAGE_URL published into a new, empty
    # bucket; refused, the service would have answered 503 to every submission
    monkeypatch.setenv("MOVA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    monkeypatch.setenv("STORAGE_URL", "s3://delivrables-typo/ads")
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_endpoint)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert _run_command(monkeypatch, "serve", "--no-worker", "--port", str(port)) == 1
    said = " ".join(capsys.readouterr().err.split())
    assert said == ("error: storage: S3 bucket 'delivrables-typo' does not exist: check the "
                    "name, create it, or set STORAGE_CREATE_BUCKET=1 to have it created")


def test_status_of_a_campaign_that_does_not_exist_is_an_error(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    # `status aurora-spring-lunch` (or a brief's id, the table's first column) answered
    # "no briefs for campaign ..." with exit 0, as if the campaign were there and empty.
    cli = _in_process(tmp_path, monkeypatch)
    empty = cli("status")
    assert (empty.exit_code, empty.output.strip()) == (
        0, "no briefs yet ('mova-ads submit BRIEF' queues one)")
    submitted = cli("submit", str(ROOT / "examples" / "brief.yaml"))
    assert submitted.exit_code == 0, submitted.output
    brief_id = submitted.output.split()[2]
    said = {name: cli("status", name)
            for name in ("aurora-spring-launch", "aurora-spring-lunch", brief_id)}
    assert said["aurora-spring-launch"].exit_code == 0
    assert "brief" in said["aurora-spring-launch"].output  # the table
    assert {name: (done.exit_code, " ".join(done.output.split()))
            for name, done in said.items() if name != "aurora-spring-launch"} == {
        "aurora-spring-lunch": (2, "error: no campaign 'aurora-spring-lunch'"),
        brief_id: (2, f"error: no campaign '{brief_id}' (that is an id: status takes a "
                      "campaign slug, or none for every campaign)"),
    }


@pytest.mark.parametrize("team", ["Ac me", ""])
def test_submit_to_a_team_name_no_team_can_have_is_not_told_to_create_it(
        team: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It answered "team 'Ac me' does not exist (mova-ads team create Ac me)": a command that
    # fails (team create refuses the name, and unquoted it is two arguments).
    cli = _in_process(tmp_path, monkeypatch)
    done = cli("submit", str(ROOT / "examples" / "brief.yaml"),
                                    "--team", team)
    assert (done.exit_code, " ".join(done.output.split())) == (
        2, f"error: no team {team!r}: team names are lowercase letters, digits and dashes")


def test_run_on_an_empty_queue_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `mova-ads run` with nothing submitted printed nothing at all (done, stuck or broken?),
    # after starting Prefect's server for a flow with nothing to do
    cli = _in_process(tmp_path, monkeypatch)
    started = time.monotonic()
    done = cli("run")
    assert (done.exit_code, " ".join(done.output.split())) == (
        0, "nothing to produce: no brief waits ('mova-ads submit BRIEF' queues one; "
           "'mova-ads brief pending' lists those waiting for approval)")
    assert time.monotonic() - started < 10, "Prefect or Ray was started for nothing"


def test_a_postgresql_database_missing_a_table_is_one_paragraph(
        fresh_postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # SQLite's "no such table" was one paragraph; PostgreSQL's (a ProgrammingError) was
    # SQLAlchemy's traceback, the query in it.
    _migrated_then(fresh_postgres_url, "DROP TABLE lora", tmp_path, monkeypatch)
    assert _run_command(monkeypatch, "lora", "list") == 1
    assert " ".join(capsys.readouterr().err.split()) == (
        f"error: the database cannot be used: relation \"lora\" does not exist DATABASE_URL is "
        f"{fresh_postgres_url}; check that the URL names mova-ads' database: this one lacks "
        "what its migrations made")


def test_run_against_a_prefect_server_that_does_not_answer_is_one_paragraph(
        tmp_path: Path) -> None:
    # `mova-ads run` with PREFECT_API_URL naming a server that is down printed 400 lines of
    # Prefect's and httpx's traceback from inside the first flow call
    assert _cli(tmp_path, "submit", str(ROOT / "examples" / "brief.yaml")).returncode == 0
    done = _cli(tmp_path, "run", PREFECT_API_URL="http://127.0.0.1:9/api")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    said = " ".join(done.stderr.split())
    assert said.startswith("error: the Prefect server at PREFECT_API_URL=http://127.0.0.1:9/api "
                           "cannot be reached (ConnectError:"), said
    assert said.endswith("start it, or unset PREFECT_API_URL to run on Prefect's ephemeral "
                         "server")


def test_submit_names_a_folder_given_for_the_brief(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # `mova-ads submit examples` (the folder, not the file) said "no file examples"
    cli = _in_process(tmp_path, monkeypatch)
    folder = cli("submit", str(ROOT / "examples"))
    assert (folder.exit_code, " ".join(folder.output.split())) == (
        2, f"error: {ROOT / 'examples'} is a folder: give the brief file in it")
    missing = cli("submit", str(tmp_path / "brief.yml"))
    assert (missing.exit_code, " ".join(missing.output.split())) == (
        2, f"error: {tmp_path / 'brief.yml'} does not exist")
    # /dev/null exists: "does not exist" sent the user looking for a missing file
    device = cli("submit", "/dev/null")
    assert (device.exit_code, " ".join(device.output.split())) == (
        2, "error: /dev/null is not a regular file (a device or a pipe): give the brief file")


def test_a_failing_prefect_server_is_one_line_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    # Prefect's database on a full disk answered 500; the run ended in a traceback thousands of
    # lines below the cause
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    import app.cli

    request = httpx.Request("POST", "http://127.0.0.1:4200/api/flow_runs/x/set_state")
    answer = httpx.Response(500, request=request, text="Internal Server Error")

    def failing_server() -> None:
        raise PrefectHTTPStatusError.from_httpx_error(httpx.HTTPStatusError(
            "Server error '500 Internal Server Error'", request=request, response=answer))

    monkeypatch.setenv("MOVA_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(app.cli, "app", failing_server)
    assert _run_command(monkeypatch, "run") == 1
    said = " ".join(capsys.readouterr().err.split())
    assert said.startswith("error: the Prefect server (") and "failed: Server error '500" in said
    assert said.endswith("free disk space; finished work is kept and 'mova-ads run' produces "
                         "the rest")

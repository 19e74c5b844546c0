"""Settings come from the environment; bad values fail with the variable's name."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from infra.db import make_engine
from infra.settings import Settings, SettingsInvalid, load_settings
from schemas.plan import RENDER_PROFILES

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_defaults_are_the_embedded_ones() -> None:
    settings = load_settings({})
    assert settings.database == "sqlite:///.mova/mova_ads.db"
    assert settings.storage.startswith("file://") and settings.storage.endswith(".mova/storage")
    assert settings.ray_address is None and settings.mova_render_profile == "tiny"


def test_environment_overrides_and_empty_means_unset() -> None:
    settings = load_settings({"DATABASE_URL": "postgresql+psycopg://u@h/db", "RAY_ADDRESS": "",
                              "RENDER_WORKERS": "4", "MOVA_DTYPE": "bfloat16"})
    assert settings.database == "postgresql+psycopg://u@h/db"
    assert settings.ray_address is None and settings.render_workers == 4


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(SettingsInvalid, match="MOVA_RENDER_PROFILE"):
        load_settings({"MOVA_RENDER_PROFILE": "4k"})
    with pytest.raises(SettingsInvalid, match="RENDER_WORKERS"):
        load_settings({"RENDER_WORKERS": "0"})
    with pytest.raises(SettingsInvalid, match="FINISH_X264_PRESET"):
        load_settings({"FINISH_X264_PRESET": "turbo"})
    assert load_settings({"FINISH_X264_PRESET": "medium"}).finish_x264_preset == "medium"
    assert load_settings({"MOVA_DEVICE": "cuda:1"}).mova_device == "cuda:1"
    for address in ("auto", "local", "ray://head:10001", "ray://head", "10.0.0.5:6379",
                    "[::1]:6379"):
        assert load_settings({"RAY_ADDRESS": address}).ray_address == address
    assert load_settings({"FIRST_FRAME_S3_PREFIXES": "s3://a/x/, s3://b"}).first_frame_prefixes \
        == ["s3://a/x/", "s3://b/"]


@pytest.mark.parametrize(("name", "value", "says"), [
    ("DATABASE_URL", "garbage://x", "Can't load plugin"),  # was a traceback at the first query
    ("DATABASE_URL", "not a url", "Could not parse"),
    ("STORAGE_URL", "s3://", "names no bucket"),
    ("STORAGE_URL", "ftp://host/dir", "unsupported storage URL"),
    # two slashes: a host, ignored, and the files went to the working directory
    ("STORAGE_URL", "file://storage", "'file://storage' names the host 'storage': a file URL "
                                      "has three slashes"),
    ("STORAGE_URL", "file://", "names no folder"),
    ("STORAGE_URL", "file:///", "names no folder \\(or the root folder\\)"),
    ("OPENLINEAGE_URL", "marquez:5000", "not an OpenLineage endpoint"),  # failed every brief
    ("OPENLINEAGE_URL", "https://", "not an OpenLineage endpoint"),
    # a dialect whose driver is not installed was a ModuleNotFoundError traceback at once
    ("DATABASE_URL", "mysql://user@host/db", "No module named 'MySQLdb'"),
    ("DATABASE_URL", "sqlite+pysqlcipher:///x.db", "No module named"),
    # installed (Prefect's), but the service's sessions are synchronous
    ("DATABASE_URL", "postgresql+asyncpg://user@host/db", "postgresql\\+asyncpg is an asyncio"),
    ("DATABASE_URL", "sqlite+aiosqlite:///x.db", "asyncio driver"),
    # two slashes: SQLAlchemy's ArgumentError traceback from every command
    ("DATABASE_URL", "sqlite://mova.db", "'sqlite://mova.db' names no file: a SQLite URL has "
                                         "three slashes"),
    # what a command stored (a team, its token) was gone when it ended
    ("DATABASE_URL", "sqlite://", "'sqlite://' is an in-memory database"),
    ("DATABASE_URL", "sqlite:///:memory:", "in-memory database, gone when the command ends"),
    # a traceback at the first upload ("Invalid endpoint")
    ("S3_ENDPOINT_URL", "minio:9000", "'minio:9000' is not an S3 endpoint"),
    # could never match a first frame, yet was listed to the user as allowed
    ("FIRST_FRAME_S3_PREFIXES", "s3://frames/emea/, frames/apac",
     "'frames/apac' is not an s3://bucket/prefix location"),
    # `mova-ads run` printed 400 lines of Prefect's traceback; the pages linked nowhere
    ("PREFECT_API_URL", "prefect:4200/api", "'prefect:4200/api' is not a web address"),
    ("PREFECT_UI_URL", "localhost", "not a web address"),
    ("RAY_DASHBOARD_URL", "ftp://head:8265", "not a web address"),
    # failed every brief of a run with Ray's "Invalid address format"
    ("RAY_ADDRESS", "garbage", "'garbage' is not a Ray address"),
    ("RAY_ADDRESS", "head:port", "not a Ray address"),
    ("RAY_ADDRESS", "http://head:8265", "not a Ray address"),  # the dashboard's, not ray.init's
    # accepted before, and failed every render in the actors
    ("MOVA_DEVICE", "tpu", "'tpu' is no render device: expected cpu, cuda or cuda:N"),
    ("MOVA_DEVICE", "cuda:", "no render device"),
])
def test_urls_are_checked_when_the_settings_are_read(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsInvalid, match=f"{name}.*{says}"):
        load_settings({name: value})


def test_readme_documents_every_variable() -> None:
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in README]
    assert not missing, f"README configuration table lacks {missing}"


def test_the_process_environment_is_read_and_a_given_mapping_replaces_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_WORKERS", "3")
    monkeypatch.setenv("RAY_ADDRESS", "")
    from_process = load_settings()
    assert from_process.render_workers == 3 and from_process.ray_address is None
    assert load_settings({}).render_workers == 1  # the process environment is not consulted
    monkeypatch.setenv("RENDER_WORKERS", "-1")
    with pytest.raises(SettingsInvalid, match="RENDER_WORKERS"):
        load_settings()


def test_every_render_profile_setting_names_a_profile_and_each_profile_can_be_chosen() -> None:
    allowed = set(get_args(Settings.model_fields["mova_render_profile"].annotation))
    assert allowed == set(RENDER_PROFILES)
    demo = RENDER_PROFILES[load_settings({"MOVA_RENDER_PROFILE": "demo"}).mova_render_profile]
    # the demo model's own unconditional text is the empty prompt, not the release's
    assert (demo.height, demo.width, demo.negative_prompt) == (64, 112, "")
    # the tiny preset at the tiny size: its step costs what a tiny step costs
    settings = load_settings({})
    assert settings.gpu_seconds_per_step("demo") == settings.gpu_seconds_per_step("tiny")


@pytest.mark.parametrize("profile", sorted(RENDER_PROFILES))
def test_the_cost_model_prices_every_render_profile(profile: str) -> None:
    # a brief submitted under a profile the cost model did not know failed with a KeyError
    assert load_settings({}).gpu_seconds_per_step(profile) > 0


def test_a_data_dir_that_is_a_file_is_named(tmp_path: Path) -> None:
    # MOVA_DATA_DIR naming a file (or a folder under one) was a NotADirectoryError traceback
    # from every command, raised while Prefect's home was made in it.
    afile = tmp_path / "mova.db"
    afile.write_text("")
    for data_dir in (afile, afile / "sub"):
        with pytest.raises(SettingsInvalid) as raised:
            load_settings({"MOVA_DATA_DIR": str(data_dir)})
        # our words, without pydantic's "Value error, " before them
        assert f"MOVA_DATA_DIR: {data_dir} cannot be the data folder: {afile} is a file" \
            in str(raised.value)
    assert load_settings({"MOVA_DATA_DIR": str(tmp_path / "new" / "dir")})  # made when used


def test_a_sqlite_url_naming_a_folder_or_a_path_through_a_file_is_named(tmp_path: Path) -> None:
    # each was a FileExistsError traceback from every command
    afile = tmp_path / "notes.txt"
    afile.write_text("")
    with pytest.raises(SettingsInvalid) as raised:
        load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}"})
    assert f"DATABASE_URL: {tmp_path} is a folder: name a file in it, e.g. " \
           f"sqlite:///{tmp_path}/mova.db" in str(raised.value)
    with pytest.raises(SettingsInvalid) as raised:
        load_settings({"DATABASE_URL": f"sqlite:///{afile}/sub/x.db"})
    assert f"{afile}/sub/x.db cannot be a SQLite file: {afile} is a file" in str(raised.value)
    # a folder still to be made is made when the database is opened
    assert load_settings({"DATABASE_URL": f"sqlite:///{tmp_path}/new/dir/x.db"})


def test_paths_under_the_home_folder_are_expanded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # sqlite:///~/mova.db made a folder named ~ in the working directory
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings({"DATABASE_URL": "sqlite:///~/mova/ads.db"}).database == \
        f"sqlite:///{tmp_path}/mova/ads.db"
    assert load_settings({"DATABASE_URL": "sqlite:///relative/ads.db"}).database == \
        "sqlite:///relative/ads.db"  # anything else as written
    # and so are the storage folder and the checkpoint folder
    given = load_settings({"STORAGE_URL": "~/store", "MOVA_CHECKPOINT": "~/ckpt"})
    assert (given.storage, given.mova_checkpoint) == (f"{tmp_path}/store", tmp_path / "ckpt")


def test_a_sqlite_folder_that_cannot_be_made_is_one_line() -> None:
    # /proc takes no folders, as root or not: FileNotFoundError's traceback before
    with pytest.raises(SettingsInvalid, match="DATABASE_URL: the SQLite file's folder "
                                              "/proc/mova cannot be made"):
        make_engine("sqlite:////proc/mova/x.db")


def test_a_data_dir_under_the_home_folder_is_not_a_folder_named_tilde(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # MOVA_DATA_DIR=~/mova from an env file (no shell expands it) made ./~/mova, and every
    # team and brief seemed gone ("no teams yet").
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings({"MOVA_DATA_DIR": "~/mova"}).mova_data_dir == tmp_path / "mova"

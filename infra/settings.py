"""Settings, read once from the environment and passed down (no module-level globals).

Every field is an environment variable of the same name in upper case (pydantic-settings reads
them; an empty value counts as unset); the README's configuration table lists them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import AfterValidator, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from schemas.errors import validation_message
from schemas.finishing import DELIVERY_X264_PRESET, X264Preset

DEFAULT_DATA_DIR = ".mova"


def check_database_url(url: str) -> str:
    """A URL SQLAlchemy can open (its dialect and driver installed), checked when the settings
    are read: a typo was a traceback at the first query."""
    if not url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    example = "e.g. postgresql+psycopg://user@host:5432/db or sqlite:///path.db"
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
        dialect.import_dbapi()  # the driver itself: `mysql://` lacked one, found at first query
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as err:
        raise ValueError(f"not a database URL this service can open ({err}); {example}"
                         ) from None
    if getattr(dialect, "is_async", False):  # the service's sessions are synchronous
        raise ValueError(f"{url.split('://')[0]} is an asyncio driver, which this service "
                         f"cannot use; {example}")
    if dialect.name not in SUPPORTED_DATABASES:
        raise ValueError(f"{dialect.name} is not supported (the migrations and locks are "
                         f"written for PostgreSQL and SQLite); {example}")
    if dialect.name == "sqlite":
        if parsed.host:  # sqlite://mova.db: SQLAlchemy's ArgumentError traceback at first use
            raise ValueError(f"{url!r} names no file: a SQLite URL has three slashes, "
                             "sqlite:///relative/path.db or sqlite:////absolute/path.db")
        if parsed.database in (None, "", ":memory:"):  # a team created was gone at once
            raise ValueError(f"{url!r} is an in-memory database, gone when the command ends: "
                             "name a file, sqlite:///path.db")
        database = parsed.database or ""
        if database.startswith("~"):
            database = _home_expanded(database)
            url = parsed.set(database=database).render_as_string(hide_password=False)
        check_sqlite_path(Path(database))
    return url


SUPPORTED_DATABASES = ("postgresql", "sqlite")


def _file_in_the_way(folders: Path) -> Path | None:
    """The file standing where `folders` (or the nearest of its parents that exists) should be
    a folder; None when the nearest existing one is a folder, or nothing of it exists."""
    for part in (folders, *folders.parents):
        if part.exists():
            return None if part.is_dir() else part
    return None


def check_sqlite_path(path: Path) -> None:
    """A SQLite file's path that can hold one: a folder there, or a file where a folder of its
    path should be, was FileExistsError's traceback from every command."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder: name a file in it, "
                         f"e.g. sqlite:///{path / 'mova.db'}")
    if blocking := _file_in_the_way(path.parent):
        raise ValueError(f"{path} cannot be a SQLite file: {blocking} is a file")


def check_data_dir(path: Path) -> Path:
    """A folder, or one that can be made: a file in its place (or in its path) was a
    NotADirectoryError traceback from every command. A leading `~` is the home folder, as a
    shell would have it (from a systemd or Docker env file it made a folder named `~`)."""
    path = path.expanduser()
    if blocking := _file_in_the_way(path):
        raise ValueError(f"{path} cannot be the data folder: {blocking} is a file")
    return path


def check_device(device: str) -> str:
    """A torch device the render actors can use, checked when the settings are read (torch is
    not imported for it: every command reads the settings)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"{device!r} is no render device: expected cpu, cuda or cuda:N")
    return device


def check_storage_url(url: str) -> str:
    """`s3://bucket[/prefix]`, `file:///abs/dir` or a path, checked when the settings are read."""
    parsed = urlparse(url)
    if parsed.scheme == "s3" and not parsed.netloc:
        raise ValueError(f"{url!r} names no bucket: expected s3://bucket/prefix")
    if parsed.scheme not in ("", "s3", "file"):
        raise ValueError(f"unsupported storage URL {url!r}: expected s3://bucket/prefix, "
                         "file:///dir or a path")
    if parsed.scheme == "file":
        # file://storage (two slashes, meant as a folder) named a host, which was ignored:
        # the files went to the working directory; file:/// put them in the root folder
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{url!r} names the host {parsed.netloc!r}: a file URL has three "
                             "slashes, file:///absolute/dir, or give the folder as a path")
        if parsed.path.strip("/") == "":
            raise ValueError(f"{url!r} names no folder (or the root folder): expected "
                             "file:///absolute/dir or a path")
    return _home_expanded(url) if not parsed.scheme else url


def _home_expanded(path: str) -> str:
    """A path starting with ~ under the home folder, as a shell would have it: from an env
    file or a systemd unit it was taken as written, a folder named ~ in the working
    directory, and what was stored there seemed gone when run from elsewhere."""
    return str(Path(path).expanduser()) if path.startswith("~") else path


def _is_http_url(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def check_openlineage_url(url: str) -> str:
    """`http(s)://host[:port][/path]`, checked when the settings are read: a URL without a
    scheme failed the first task of every brief. Not echoed: it may carry a token."""
    if not _is_http_url(url):
        raise ValueError("not an OpenLineage endpoint: expected http(s)://host[:port][/path]")
    return url


def check_s3_endpoint_url(url: str) -> str:
    """`http(s)://host[:port]`: boto3 raised "Invalid endpoint" at the first upload."""
    if not _is_http_url(url):
        raise ValueError(f"{url!r} is not an S3 endpoint: expected http(s)://host[:port]")
    return url


def check_web_url(url: str) -> str:
    """`http(s)://host[:port][/path]` of a server or a page: Prefect's API without a scheme
    was a 400-line traceback at `mova-ads run`, a link without one a broken link."""
    if not _is_http_url(url):
        raise ValueError(f"{url!r} is not a web address: expected http(s)://host[:port][/path]")
    return url


def check_ray_address(address: str) -> str:
    """`auto`, `local`, `ray://host[:port]` or `host:port` (the head's GCS), as ray.init takes
    them: anything else failed every brief of a run with Ray's "Invalid address format"."""
    if address in ("auto", "local"):
        return address
    parsed = urlparse(address if address.startswith("ray://") else f"//{address}")
    try:
        port = parsed.port
    except ValueError:  # a port that is no number, or out of range
        port = None
    if not parsed.hostname or parsed.path or (port is None and parsed.scheme != "ray"):
        raise ValueError(f"{address!r} is not a Ray address: expected auto, ray://head:10001 "
                         "or head:6379")
    return address


def check_s3_prefixes(prefixes: str) -> str:
    """Comma-separated `s3://bucket[/prefix]`: anything else could never match a first frame,
    and its briefs were refused with a list naming it as allowed."""
    for prefix in (p.strip() for p in prefixes.split(",")):
        if prefix and (not prefix.startswith("s3://") or not urlparse(prefix).netloc):
            raise ValueError(f"{prefix!r} is not an s3://bucket/prefix location")
    return prefixes


DatabaseUrl = Annotated[str, AfterValidator(check_database_url)]
DataDir = Annotated[Path, AfterValidator(check_data_dir)]
HomePath = Annotated[Path, AfterValidator(Path.expanduser)]  # ~ as a shell would have it
OpenLineageUrl = Annotated[str, AfterValidator(check_openlineage_url)]
StorageUrl = Annotated[str, AfterValidator(check_storage_url)]
RenderDevice = Annotated[str, AfterValidator(check_device)]
S3EndpointUrl = Annotated[str, AfterValidator(check_s3_endpoint_url)]
S3Prefixes = Annotated[str, AfterValidator(check_s3_prefixes)]
RayAddress = Annotated[str, AfterValidator(check_ray_address)]
WebUrl = Annotated[str, AfterValidator(check_web_url)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_ignore_empty=True)

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Arguments and the process environment only: no .env file or secrets folder is read
        # behind the operator's back.
        return init_settings, env_settings

    mova_data_dir: DataDir = Field(default=Path(DEFAULT_DATA_DIR), description=(
        "Folder for the embedded defaults: SQLite file, local storage, checkpoints, lineage."))
    database_url: DatabaseUrl = Field(default="", description=(
        "SQLAlchemy URL. Default: SQLite file `<data dir>/mova_ads.db`. Production: "
        "`postgresql+psycopg://user@host:5432/db`."))
    storage_url: StorageUrl = Field(default="", description=(
        "Where artifacts and deliverables go. Default: `file://<data dir>/storage`. "
        "Production: `s3://bucket/prefix`."))
    storage_create_bucket: bool = Field(default=False, description=(
        "Create the S3 bucket STORAGE_URL names when it does not exist. Off: a missing bucket "
        "is an error, so a misspelt name never becomes a new, empty bucket."))
    s3_endpoint_url: S3EndpointUrl | None = Field(default=None, description=(
        "S3 endpoint for non-AWS stores (MinIO, moto); unset for AWS."))
    aws_region: str = Field(default="us-east-1", description="S3 region.")
    ray_address: RayAddress | None = Field(default=None, description=(
        "Ray cluster address (`ray://head:10001`, `head:6379` or `auto`). Unset: local Ray "
        "on this machine."))
    ray_dashboard: bool = Field(default=False, description=(
        "Start the Ray dashboard with local Ray (a cluster has its own)."))
    mova_checkpoint: HomePath | None = Field(default=None, description=(
        "MOVA checkpoint folder (official layout). Default: `<data dir>/checkpoints/tiny`, "
        "random weights, made by `mova-ads run` if absent."))
    mova_render_profile: Literal["tiny", "demo", "360p", "720p"] = Field(
        default="tiny", description=(
            "Render size and steps: `tiny` (64x112, 8 steps), `demo` (the demo model's: 64x112, "
            "20 steps, cfg 3.5 for the picture and 1.5 for the sound, empty negative prompt), "
            "`360p` (352x640, 50), `720p`."))
    mova_device: RenderDevice = Field(default="cpu", description=(
        "Torch device for the render actors: cpu, cuda (or cuda:N)."))
    mova_dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="float32, bfloat16 or float16.")
    mova_offload: Literal["none", "component", "block"] = Field(
        default="none", description="none, component or block (small GPUs).")
    render_workers: int = Field(default=1, ge=1, description=(
        "Render actors (one per GPU on a cluster; each CPU actor loads its own model)."))
    render_threads: int | None = Field(default=None, ge=1, description=(
        "Torch threads of each CPU render actor. Unset: the node's cores less one, shared by "
        "its actors (at least one each): the flow finishes, checks and publishes beside the "
        "renders, and a render whose threads must wait for a busy core slows down many times."))
    render_gpus_per_worker: float = Field(default=0.0, ge=0, description="GPUs per render actor.")
    render_context_parallel: int = Field(default=1, ge=1, description=(
        "Actors per render: >1 starts gangs of this many actors on one node (a GPU each) that "
        "split every clip's tokens (context parallel); RENDER_WORKERS then counts gangs."))
    render_max_in_flight: int | None = Field(default=None, ge=1, description=(
        "Outstanding renders at most (default: one per actor)."))
    finish_concurrency: int = Field(default=2, ge=1, description=(
        "Scene finishes and spot assemblies (ffmpeg encodes, QC) running at once in the flow "
        "process, next to the renders."))
    finish_niceness: int = Field(default=10, ge=0, le=19, description=(
        "Scheduling niceness (Unix `nice`) of the flow's ffmpeg runs: when renders and "
        "finishing both want a core, the render (which the finishes wait for) gets it; 0 runs "
        "ffmpeg at the flow's own priority."))
    finish_x264_preset: X264Preset = Field(default=DELIVERY_X264_PRESET, description=(
        "x264 preset of delivered pictures (spots, published scenes): ultrafast ... placebo. "
        "`superfast` encodes with 34-42 % less CPU than `veryfast` at 0.5-0.6 dB lower "
        "PSNR at the delivery bitrate; a slower preset suits GPU clusters, where renders "
        "dominate."))
    openlineage_url: OpenLineageUrl | None = Field(default=None, description=(
        "OpenLineage HTTP endpoint; unset: events are written to `<data dir>/lineage/`."))
    openlineage_api_key: str | None = Field(default=None, repr=False, description=(
        "API key for the OpenLineage endpoint, sent as `Authorization: Bearer <key>`."))
    prefect_api_url: WebUrl | None = Field(default=None, description=(
        "Prefect server API. Unset: Prefect's ephemeral server (read by Prefect itself). Set: "
        "the review service starts the `produce-campaign` deployment for each new brief."))
    prefect_ui_url: WebUrl | None = Field(default=None, description=(
        "Prefect UI for flow-run links on the review page. Default: `PREFECT_API_URL` "
        "without its `/api`."))
    ray_dashboard_url: WebUrl | None = Field(default=None, description=(
        "Ray dashboard link on the review page. Default with `RAY_DASHBOARD`: "
        "`http://127.0.0.1:8265`."))
    api_max_body_bytes: int = Field(default=20 * 2**20, ge=1024, description=(
        "Largest request body the review service accepts (brief plus first-frame images)."))
    api_submissions_per_minute: int = Field(default=10, ge=1, description=(
        "Briefs one team may submit per minute; more get HTTP 429."))
    produce_deployment: str = Field(default="produce-campaign/produce-campaign", description=(
        "Deployment the review service starts for a new brief when `PREFECT_API_URL` is set."))
    # ---- inputs at the door and budgets (issue 12)
    first_frame_s3_prefixes: S3Prefixes = Field(default="", description=(
        "Comma-separated `s3://bucket/prefix/` a brief's `first_frame` may point into (read "
        "with the service's credentials). Empty: no s3:// first frames, only uploads."))
    max_first_frame_pixels: int = Field(default=40_000_000, ge=1, description=(
        "Largest first-frame image in pixels (width x height), checked at submission; the "
        "render workers lower PIL's decompression-bomb guard to it too."))
    max_first_frame_bytes: int = Field(default=20 * 2**20, ge=1, description=(
        "Largest first-frame image file in bytes."))
    gpu_seconds_per_step_tiny: float = Field(default=0.05, gt=0, description=(
        "Cost model: GPU-seconds one sampling step of one render takes at profile `tiny` "
        "(a CPU core: about 0.05)."))
    gpu_seconds_per_step_360p: float = Field(default=1.5, gt=0, description=(
        "GPU-seconds per step at `360p` (one 80 GB GPU, default offload: about 1.5)."))
    gpu_seconds_per_step_720p: float = Field(default=6.0, gt=0, description=(
        "GPU-seconds per step at `720p` (one 80 GB GPU: about 6)."))
    max_variants_per_brief: int = Field(default=200, ge=1, description=(
        "Most variants (scene x locale x aspect) one brief may ask for; more: HTTP 422."))
    max_renders_per_brief: int = Field(default=100, ge=1, description=(
        "Most model renders one brief may need; more: HTTP 422."))
    team_gpu_seconds_per_day: float = Field(default=36_000.0, gt=0, description=(
        "Estimated GPU-seconds a team's briefs may add per UTC day; past it: HTTP 429."))
    approval_gpu_seconds: float = Field(default=3_600.0, ge=0, description=(
        "Briefs estimated above this wait (status `awaiting_approval`) until an operator "
        "runs `mova-ads brief approve <id>`."))

    def gpu_seconds_per_step(self, profile: str) -> float:
        """The cost model's seconds per sampling step of a render profile."""
        # `demo` is the tiny preset (trained weights) at the tiny size: the same step
        return {"tiny": self.gpu_seconds_per_step_tiny, "demo": self.gpu_seconds_per_step_tiny,
                "360p": self.gpu_seconds_per_step_360p,
                "720p": self.gpu_seconds_per_step_720p}[profile]

    @property
    def first_frame_prefixes(self) -> list[str]:
        """The allowed `s3://bucket/prefix` first-frame locations, each ending in '/' (so
        `s3://b/team` never admits `s3://b/team-other/...`)."""
        return [p.strip().rstrip("/") + "/" for p in self.first_frame_s3_prefixes.split(",")
                if p.strip()]

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.mova_data_dir / 'mova_ads.db'}"

    @property
    def storage(self) -> str:
        return self.storage_url or f"file://{(self.mova_data_dir / 'storage').resolve()}"

    @property
    def checkpoint(self) -> Path:
        return self.mova_checkpoint or self.mova_data_dir / "checkpoints" / "tiny"

    @property
    def prefect_ui(self) -> str | None:
        if self.prefect_ui_url:
            return self.prefect_ui_url.rstrip("/")
        return self.prefect_api_url.rstrip("/").removesuffix("/api") if self.prefect_api_url \
            else None

    @property
    def ray_dashboard_link(self) -> str | None:
        if self.ray_dashboard_url:
            return self.ray_dashboard_url
        return "http://127.0.0.1:8265" if self.ray_dashboard and not self.ray_address else None

    @property
    def lineage_dir(self) -> Path:
        return self.mova_data_dir / "lineage"


class _MappingEnvSource(EnvSettingsSource):
    """The environment source reading a given mapping instead of os.environ (the pattern
    pydantic-settings' own .env source follows)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._mapping = env
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # Names are matched case-insensitively (Settings' default), like the real environment.
        return {name.lower(): value for name, value in self._mapping.items()
                if not (self.env_ignore_empty and value == "")}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the process environment, or from `env` in its place (empty values count
    as unset)."""
    try:
        if env is None:
            return Settings()
        given = _MappingEnvSource(env)()
        # Every field passed (arguments outrank the environment source), so nothing of the
        # process environment fills in what `env` leaves out.
        return Settings(**{name: given.get(name, field.get_default(call_default_factory=True))
                           for name, field in Settings.model_fields.items()})
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: "
                             f"{validation_message(e)}"
                             for e in err.errors())
        raise SettingsInvalid(f"invalid configuration: {problems}") from err
    except SettingsError as err:
        raise SettingsInvalid(f"invalid configuration: {err}") from err


class SettingsInvalid(ValueError):
    """An environment variable holds a value the pipeline cannot use."""

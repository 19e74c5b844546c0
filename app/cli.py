"""`mova-ads`: submit briefs, run production, inspect status and lineage."""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
import signal
import socket
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, TextIO
from uuid import UUID

import typer
from alembic.util import CommandError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DatabaseError, OperationalError

from infra import repository as repo
from infra.db import session_scope
from infra.settings import Settings, SettingsInvalid, load_settings
from infra.statuses import DELIVERABLE_ENDED, BriefStatus, RenderStatus
from infra.storage_errors import StorageError
from schemas.brief import MAX_BRIEF_BYTES
from schemas.errors import BriefInvalid, NotFound, first_line
from tasks.services import Services

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="MOVA ad factory: localized audio+video ads from campaign briefs.")


def _width(stream: TextIO) -> int | None:
    """Tables and messages are wide: off a terminal (CI logs, pipes) they are not wrapped at 80
    columns but at 200, unless COLUMNS says how wide to be (None: the terminal's or COLUMNS')."""
    return None if stream.isatty() or os.environ.get("COLUMNS", "").isdigit() else 200


# soft_wrap: a line of text is never broken by us (the terminal wraps it; a log or a grep sees
# it whole, whatever COLUMNS the environment exports); tables still fit the width.
console = Console(width=_width(sys.stdout), soft_wrap=True)
errors = Console(stderr=True, width=_width(sys.stderr), soft_wrap=True)
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_BRIEF = ROOT / "examples" / "brief.yaml"
# `demo` by default: the tiny MOVA trained here on the synthetic world (make demo-model), and a
# brief written in that world's words, so the spots show what the brief asks for.
DEMO_MODEL = ROOT / "assets" / "demo-model"
DEMO_BRIEF = ROOT / "examples" / "demo-brief.yaml"


def _services() -> Services:
    return Services(load_settings())


NO_TEAMS = "no teams yet ('mova-ads team create NAME' adds one)"


def _team_option(team: str | None) -> str | None:
    """`--team _local` is the default the README names (briefs and LoRAs without a team), not a
    team that exists: it was refused as unknown, with advice (`team create _local`) that fails."""
    return None if team == repo.NO_TEAM else team


def _none_listed(message: str) -> None:
    """Say that a list is empty, on stderr: stdout stays the list itself for scripts."""
    errors.print(message, markup=False, highlight=False)


@app.command()
def submit(brief: Annotated[Path, typer.Argument(help="Brief file (.yaml or .json).")],
           team: Annotated[str | None, typer.Option(help="Owning team.")] = None) -> None:
    """Validate a brief and queue it for production."""
    if not brief.is_file():  # a folder was "no file <folder>", as if it were missing
        what = ("is a folder: give the brief file in it" if brief.is_dir() else
                "is not a regular file (a device or a pipe): give the brief file" if
                brief.exists() else "does not exist")
        errors.print(f"[red]error:[/] {escape(str(brief))} {what}", highlight=False)
        raise typer.Exit(2)
    from app.auth import TEAM_NAME
    from tasks.submission import SubmissionRefused, gpu_seconds
    from tasks.submission import submit as submit_checked

    team = _team_option(team)
    if team is not None and not TEAM_NAME.fullmatch(team):  # (not told to `team create` it)
        errors.print(f"error: no team {team!r}: team names are lowercase letters, digits and "
                     "dashes", markup=False, highlight=False)
        raise typer.Exit(2)
    fmt = "json" if brief.suffix.lower() == ".json" else "yaml"
    if (size := brief.stat().st_size) > MAX_BRIEF_BYTES:  # not read: a video named by mistake
        errors.print(f"[red]{escape(str(brief))} was rejected[/]: it is {size:,} bytes; the "
                     f"limit is {MAX_BRIEF_BYTES:,}", highlight=False)
        raise typer.Exit(1)
    raw = brief.read_bytes()
    try:
        with _services() as services:
            submitted = submit_checked(services, raw, fmt=fmt,
                                       base_dir=brief.parent, team=team)
    except SubmissionRefused as err:
        errors.print(f"[red]refused[/]: {escape(str(err))}", highlight=False)
        raise typer.Exit(1) from None
    except BriefInvalid as err:
        errors.print(f"[red]{escape(str(brief))} was rejected[/]: {len(err.problems)} problem(s)")
        for path, message in err.problems:
            errors.print(f"  {path}: {message}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if not submitted.created:  # `make demo` twice: one brief, not two
        console.print(f"brief {submitted.brief_id} was submitted before; not submitted again")
        return
    cost = f" (estimated {gpu_seconds(submitted.cost.gpu_seconds)} GPU-seconds)" if submitted.cost \
        else ""
    console.print(f"submitted brief {submitted.brief_id}{cost}")


class _ProgressWatcher:
    """Polls the database while a run works and draws renders / deliverables progress."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _counts(self) -> tuple[int, int, int, int]:
        with session_scope(self.services.engine) as session:
            renders, outputs = repo.render_progress(session)
        done = sum(outputs[status] for status in DELIVERABLE_ENDED)
        return renders[RenderStatus.DONE], renders.total(), done, outputs.total()

    def _run(self) -> None:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        with Progress(*columns, console=errors, transient=True) as progress:
            renders = progress.add_task("renders", total=None)
            outputs = progress.add_task("deliverables", total=None)
            while not self.stop.wait(0.5):
                try:
                    r_done, r_total, d_done, d_total = self._counts()
                except Exception:  # noqa: BLE001 - a busy database must not kill the bar
                    continue
                progress.update(renders, completed=r_done, total=r_total or None)
                progress.update(outputs, completed=d_done, total=d_total or None)

    def __enter__(self) -> _ProgressWatcher:
        if errors.is_terminal:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)


def _prefect_environment() -> None:
    """Embedded default: Prefect's ephemeral server keeps its state under the data dir (not
    ~/.prefect, shared by every project), without telemetry. A PREFECT_API_URL wins. Prefect
    reads these once, when it is first imported, so this runs before any command: `demo`
    imports it while submitting, before it produces."""
    settings = load_settings()
    if "PREFECT_HOME" not in os.environ:
        home = (settings.mova_data_dir / "prefect").resolve()
        try:
            home.mkdir(parents=True, exist_ok=True)  # no data dir yet on PostgreSQL and S3
        except OSError as err:  # another user's folder, a read-only disk: not a traceback
            raise SettingsInvalid(f"invalid configuration: MOVA_DATA_DIR: "
                                  f"{settings.mova_data_dir} cannot be used: {home} cannot be "
                                  f"made ({err.strerror})") from None
        os.environ["PREFECT_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Prefect gives its ephemeral server 20 s to start; a busy 2-core machine needs more (a
    # `make demo` right after the test suite timed out there).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def _configure_prefect(verbose: bool) -> None:
    _prefect_environment()
    level = "INFO" if verbose else "WARNING"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", level)
    logging.getLogger("prefect").setLevel(level)
    if not verbose:  # a failed brief's warnings and errors, one line each; tracebacks with -v
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            run_logger = logging.getLogger(name)
            if not any(isinstance(f, _WithoutTraceback) for f in run_logger.filters):
                run_logger.addFilter(_WithoutTraceback())


class _WithoutTraceback(logging.Filter):
    """Drops a record's traceback (a brief that failed printed 200 lines of them): its message
    names the brief and the reason, and `mova-ads status` says the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _start_prefect_server() -> threading.Thread | None:
    """Start Prefect's ephemeral server (when no PREFECT_API_URL names one) on a thread, so its
    start (a subprocess; 10-20 s on a new database, for the migrations) overlaps the imports
    and the render pool's start instead of waiting for the first flow call. Join the thread
    before the first flow: a second start while the first waits for the server's health check
    would return before the server is up. A failure here is left to that flow call to raise."""
    from prefect.settings import PREFECT_API_URL

    if api_url := PREFECT_API_URL.value():
        _check_prefect_server(api_url)
        return None

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        with contextlib.suppress(Exception):
            SubprocessASGIServer().start()

    thread = threading.Thread(target=start, name="prefect-server-start", daemon=True)
    thread.start()
    return thread


def _check_prefect_server(api_url: str) -> None:
    """The configured Prefect server answers its health check: an unreachable one was a
    400-line traceback from inside the first flow call."""
    import httpx

    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as err:
        errors.print(f"error: the Prefect server at PREFECT_API_URL={api_url} cannot be reached "
                     f"({type(err).__name__}: {err}); start it, or unset PREFECT_API_URL to "
                     "run on Prefect's ephemeral server", markup=False, highlight=False)
        raise typer.Exit(1) from None


def ensure_checkpoint(settings: Settings) -> None:
    """The model a run renders with is there: a configured MOVA_CHECKPOINT must be a checkpoint
    folder; the default, the random `tiny` one in the data dir, is made when absent (`make
    demo` renders with the demo model and leaves none, so `serve` after it had no model)."""
    if (settings.checkpoint / "model_index.json").is_file():
        return
    if settings.mova_checkpoint is not None:
        folder = Path(settings.mova_checkpoint)
        why = ("it has no model_index.json" if folder.is_dir() else
               "it is a file" if folder.exists() else "no such folder")
        errors.print(f"error: MOVA_CHECKPOINT={settings.mova_checkpoint} is not a MOVA "
                     f"checkpoint folder ({why})", markup=False, highlight=False)
        raise typer.Exit(2)
    from mova_model.make_checkpoint import make_checkpoint

    console.print(f"making the tiny checkpoint in {settings.checkpoint} ...", markup=False)
    make_checkpoint(settings.checkpoint, preset="tiny", seed=0, overwrite=True)


@app.command()
def run(limit: Annotated[int, typer.Option(  # -1 was no limit on SQLite, an error on PostgreSQL
            min=1, help="Briefs to claim at most.")] = 20,
        verbose: Annotated[bool, typer.Option(
            "--verbose", "-v", help="Show Prefect's flow and task logs (INFO).")] = False
        ) -> None:
    """Ingest submitted briefs and produce every planned brief now."""
    with _services() as services, session_scope(services.engine) as session:
        # submitted, planned or half-produced, or claimed by a run that died
        waiting = repo.any_brief_waiting(session) or bool(repo.claimed_brief_ids(session))
        failed_earlier = 0 if waiting else repo.brief_count(session, BriefStatus.FAILED)
    if not waiting:  # on an empty queue it printed nothing at all (after starting Prefect)
        _none_listed("nothing to produce: no brief waits ('mova-ads submit BRIEF' queues one; "
                     "'mova-ads brief pending' lists those waiting for approval)" + (
                         f". {failed_earlier} brief(s) failed earlier: 'mova-ads status' says "
                         "why, and submitting one again produces what failed"
                         if failed_earlier else ""))
        return
    _configure_prefect(verbose)
    from app.prefect_home import seed_home

    seed_home()  # a new home starts from the empty database made at install
    _stop_on_interrupt()
    server = _start_prefect_server()
    from flows.ingest import BriefsFailed, ingest_briefs
    from tasks.render import keep_pools_open

    with _services() as services:
        started = time.monotonic()
        ensure_checkpoint(services.settings)
        # The render pool (Ray, the actors' model load) starts opening now, beside Prefect's
        # server start and the planning, not after them.
        failed: list[str] = []
        with keep_pools_open(warm=services.settings), _ProgressWatcher(services):
            if server is not None:
                server.join()
            try:
                ingest_briefs(limit=limit, produce=True)
            except BriefsFailed as err:  # each brief's reasons are in the database
                failed = err.brief_ids
        _deliverables_table(services, title=f"done in {time.monotonic() - started:.0f} s")
        if failed:  # a cron job or CI must see it: exit 1, one line per brief
            _report_failed_briefs(services, failed)
            raise typer.Exit(1)


def _report_failed_briefs(services: Services, brief_ids: list[str]) -> None:
    """One line per brief this run could not produce in full, and where its reasons are."""
    with session_scope(services.engine) as session:
        rows = [repo.get_brief(session, UUID(b)) for b in brief_ids]
        lines = [f"  {row.id}  {_campaign_shown(row)}  {row.status}: "
                 + (f"see 'mova-ads status {row.campaign.slug}' for each variant's reason; "
                    "submitting the brief again produces what failed and reuses what is done"
                    if row.status == BriefStatus.FAILED else
                    f"the next run tries again ('mova-ads status {row.campaign.slug}' says why)")
                 for row in rows]
    errors.print(f"error: {len(rows)} brief(s) not produced in full:\n" + "\n".join(lines),
                 markup=False, highlight=False)


def _campaign_shown(row: repo.BriefRow) -> str:
    """A brief's campaign as team/slug (two teams may use one slug); a CLI brief's as slug."""
    team = row.campaign.team
    return row.campaign.slug if team == repo.NO_TEAM else f"{team}/{row.campaign.slug}"


@app.command()
def status(campaign: Annotated[str | None, typer.Argument(help="Campaign slug.")] = None) -> None:
    """Briefs and their deliverables, by campaign."""
    with _services() as services:
        with session_scope(services.engine) as session:
            rows = repo.campaign_briefs(session, campaign)
            table = Table("brief", "campaign", "status", "deliverables", "submitted")
            # An invalid brief has no deliverables: its problems are the only reason shown. (A
            # failed brief's problems are its failed deliverables' errors, listed below those.)
            problems: list[tuple[str, list[str]]] = []
            for row in rows:
                counts = Counter(str(d.status) for d in repo.deliverables_that_count(row))
                summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "-"
                table.add_row(str(row.id), _campaign_shown(row), row.status, summary,
                              f"{row.created_at:%Y-%m-%d %H:%M}")
                # (a submitted brief's problem is why its last planning failed)
                if row.status in (BriefStatus.INVALID, BriefStatus.SUBMITTED) and row.problems:
                    problems.append((f"brief {row.id} {row.status}",
                                     [f"{path}: {message}" for path, message in row.problems]))
        if not rows and campaign:  # a campaign exists with its briefs: a typo, not "empty"
            errors.print(f"error: no campaign {campaign!r}" + (
                " (that is an id: status takes a campaign slug, or none for every campaign)"
                if _is_uuid(campaign) else ""), markup=False, highlight=False)
            raise typer.Exit(2)
        if not rows:
            _none_listed("no briefs yet ('mova-ads submit BRIEF' queues one)")
            return
        console.print(table)
        _print_reasons(problems)
        _deliverables_table(services, campaign=campaign)


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _deliverables_table(services: Services, *, campaign: str | None = None,
                        title: str | None = None) -> None:
    with session_scope(services.engine) as session:
        rows = _delivered(repo.campaign_deliverables(session, campaign))
        table = Table("deliverable", "variant", "status", "file", title=title)
        root = services.settings.storage.rstrip("/") + "/"
        # A reason is printed whole under the table (a table cell of an 80-column terminal
        # would wrap it into a narrow column, or cut it).
        reasons: list[tuple[str, list[str]]] = []
        for row in rows:
            note = (row.published_uri or "").removeprefix(root)
            if not note and row.error:
                note = "error below"
                reasons.append((f"{str(row.id)[:8]} {row.name} {row.status}", [row.error]))
            preview = " (preview)" if row.qc and row.qc.get("preview") else ""
            table.add_row(str(row.id)[:8], row.name, row.status + preview, Text(note))
    if rows:
        console.print(table)
        _print_reasons(reasons)


def _print_reasons(reasons: list[tuple[str, list[str]]]) -> None:
    """Each heading, then its reasons in full: wrapped at the console's width and indented
    under it, printed as they are (not read as markup)."""
    for heading, lines in reasons:
        console.print(Text(heading, style="bold"))
        for line in lines:
            for part in line.splitlines():
                console.print(textwrap.fill(part, width=console.width, initial_indent="  ",
                                            subsequent_indent="  ", break_on_hyphens=False),
                              markup=False, highlight=False, soft_wrap=True)


def _delivered(rows: list[repo.Deliverable]) -> list[repo.Deliverable]:
    """The rows a team receives: spots (and published scene cut-downs), not intermediates."""
    counted = {d.id for brief in {row.brief for row in rows}
               for d in repo.deliverables_that_count(brief)}
    return [row for row in rows if row.id in counted]


@app.command()
def lineage(deliverable: Annotated[str, typer.Argument(help="Deliverable id (or prefix).")]
            ) -> None:
    """Print a deliverable's chain back to its brief."""
    with _services() as services, session_scope(services.engine) as session:
        matches = repo.deliverables_by_id_prefix(session, deliverable)
        if len(matches) != 1:
            errors.print(f"[red]error:[/] {len(matches)} deliverables match "
                         f"{escape(repr(deliverable))}")
            raise typer.Exit(2)
        row = matches[0]
        start = repo.deliverable_manifest(session, row) or row.video
        if start is None:
            errors.print(f"deliverable {row.id} ({row.status}) has no finished file yet")
            raise typer.Exit(1)
        console.print(f"[bold]{row.name}[/] {row.status} deliverable {row.id}")
        for depth, artifact in repo.brief_lineage(session, start.id, row.brief):
            extra = f" seed={artifact.seed}" if artifact.seed is not None else ""
            console.print(f"{'  ' * depth}└ {artifact.kind:<9} {artifact.sha256[:12]} "
                          f"{artifact.task}{extra}  {artifact.uri}", markup=False,
                          highlight=False)
        console.print(f"{'  ' * 4}brief {row.brief_id} (campaign {row.brief.campaign.slug})")


team_app = typer.Typer(no_args_is_help=True, help="Teams and their API tokens.")
app.add_typer(team_app, name="team")


@team_app.command("create")
def team_create(name: Annotated[str, typer.Argument(help="Team name: a-z, 0-9, dashes.")]
                ) -> None:
    """Add a team and print its API token (shown once; only its hash is stored)."""
    from app.auth import create_team
    from schemas.errors import InvalidTransition

    try:
        with _services() as services, session_scope(services.engine) as session:
            token = create_team(session, name)
    except (ValueError, InvalidTransition) as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    errors.print(f"team {name} created; its token (store it now, it is not shown again):")
    sys.stdout.write(token + "\n")  # stdout: just the token, for scripts


@team_app.command("list")
def team_list() -> None:
    """The teams."""
    with _services() as services, session_scope(services.engine) as session:
        teams = repo.teams(session)
        for team in teams:
            console.print(f"{team.name}  (since {team.created_at:%Y-%m-%d})")
    if not teams:
        _none_listed(NO_TEAMS)


brief_app = typer.Typer(no_args_is_help=True, help="Briefs waiting for an operator.")
app.add_typer(brief_app, name="brief")


@brief_app.command("pending")
def brief_pending() -> None:
    """Briefs whose estimated cost waits for approval (over APPROVAL_GPU_SECONDS)."""
    from tasks.submission import gpu_seconds

    with _services() as services, session_scope(services.engine) as session:
        waiting = repo.briefs_awaiting_approval(session)
        for row in waiting:
            console.print(f"{row.id}  {row.team or '-'}  {row.campaign.slug}  "
                          f"{gpu_seconds(row.gpu_seconds_estimate or 0)} GPU-seconds",
                          highlight=False)
    if not waiting:
        _none_listed("no brief waits for approval")


@brief_app.command("approve")
def brief_approve(brief_id: Annotated[str, typer.Argument(
        help="Brief id, or the start of it (as 'brief pending' and 'status' show it).")]
        ) -> None:
    """Accept a brief's estimated cost: it is produced by the next ingest run."""
    from schemas.errors import InvalidTransition
    from tasks.submission import gpu_seconds

    try:
        with _services() as services, session_scope(services.engine) as session:
            matches = repo.briefs_by_id_prefix(session, brief_id)
            if len(matches) != 1:
                errors.print(f"[red]error:[/] {len(matches)} briefs match "
                             f"{escape(repr(brief_id))}" + (
                                 "; give more of the id" if matches else ""))
                raise typer.Exit(2)
            row = repo.approve_budget(session, matches[0].id)
            cost = gpu_seconds(row.gpu_seconds_estimate or 0)
            console.print(f"brief {row.id} approved ({cost} GPU-seconds); it is planned",
                          highlight=False)
    except InvalidTransition as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None


lora_app = typer.Typer(no_args_is_help=True, help="Registered LoRAs a brief may name.")
app.add_typer(lora_app, name="lora")


@lora_app.command("add")
def lora_add(name: Annotated[str, typer.Argument(help="Name briefs use: a-z, 0-9, dashes.")],
             folder: Annotated[Path, typer.Argument(help="LoRA folder (lora_weights.pt or "
                                                         ".safetensors, lora_config.pt).")],
             team: Annotated[str | None, typer.Option(help="Owning team.")] = None) -> None:
    """Register a LoRA: its files are copied to storage, its name and SHA-256 recorded."""
    from tasks.lora import LoraRejected, register_lora

    if not folder.is_dir():  # (a typo, or the weights file itself, was told what to hold)
        said = (f"{folder} is a file: give the folder that holds it, {folder.parent}"
                if folder.is_file() else f"no folder {folder}")
        errors.print(f"error: {said}", markup=False, highlight=False)
        raise typer.Exit(2)

    try:
        with _services() as services:
            done = register_lora(services, team or repo.NO_TEAM, name, folder)
    except LoraRejected as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    state = "registered" if done.created else "was registered before with the same files"
    console.print(f"LoRA {done.name} (team {done.team}) {state}: sha256 {done.sha256}",
                  highlight=False)


@lora_app.command("list")
def lora_list(team: Annotated[str | None, typer.Option(help="Owning team.")] = None) -> None:
    """The team's registered LoRAs."""
    team = _team_option(team)
    owner = team or repo.NO_TEAM
    try:
        with _services() as services, session_scope(services.engine) as session:
            if team is not None:
                repo.team_by_name(session, team)  # a mistyped team is not "no LoRAs"
            loras = repo.team_loras(session, owner)
            for row in loras:
                files = ", ".join(sorted(row.files))
                console.print(f"{row.name}  sha256 {row.sha256}  {files}  "
                              f"(since {row.created_at:%Y-%m-%d})", highlight=False)
    except NotFound as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    if not loras:
        whose = f"team {team}" if team is not None else "briefs without a team"
        _none_listed(f"no LoRAs registered for {whose} ('mova-ads lora add' registers one)")


storage_app = typer.Typer(no_args_is_help=True, help="Stored files.")
app.add_typer(storage_app, name="storage")


@storage_app.command("move-team-keys")
def storage_move_team_keys() -> None:
    """Once after migration 0003: copy published files to their team's keys.

    Copies every published and in-review file under campaigns/<team>/<campaign>/ and points
    the rows at it; it can be run again (files in place are skipped) and keeps the old keys."""
    from tasks.deliver import move_team_keys

    with _services() as services, session_scope(services.engine) as session:
        copied, kept = move_team_keys(session, services.store)
        published = len(repo.published_deliverables(session))
    console.print(f"{copied} file(s) copied to team keys, {kept} already in place")
    if published and not copied + kept:  # another STORAGE_URL: "0 copied" read as done
        errors.print(f"error: none of the files of {published} published deliverable(s) is in "
                     f"{services.settings.storage} (STORAGE_URL): is it the store they were "
                     "published to?", markup=False, highlight=False)
        raise typer.Exit(1)


token_app = typer.Typer(no_args_is_help=True, help="A team's API token: list, revoke, rotate.")
team_app.add_typer(token_app, name="token")


@token_app.command("list")
def token_list() -> None:
    """Each team's token: active or revoked, its fingerprint and page sessions.

    The fingerprint is the first digits of the token's hash, never the token."""
    from app.auth import token_is_revoked

    with _services() as services, session_scope(services.engine) as session:
        teams = repo.teams(session)
        if not teams:
            _none_listed(NO_TEAMS)
        for team in teams:
            state = ("revoked" if token_is_revoked(team)
                     else f"active  sha256:{team.token_sha256[:12]}")
            sessions = repo.team_session_count(session, team)
            console.print(f"{team.name}  {state}  sessions={sessions}", highlight=False)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="Team name.")]) -> None:
    """The team's token stops working at once and its page sessions end."""
    from app.auth import revoke_token
    from schemas.errors import NotFound

    try:
        with _services() as services, session_scope(services.engine) as session:
            revoke_token(session, name)
    except NotFound as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    errors.print(f"team {name}: token revoked, sessions ended "
                 "('team token rotate' issues a new one)", markup=False)


@token_app.command("rotate")
def token_rotate(name: Annotated[str, typer.Argument(help="Team name.")]) -> None:
    """Issue a new token (printed once); the old one stops working and page sessions end."""
    from app.auth import rotate_token
    from schemas.errors import NotFound

    try:
        with _services() as services, session_scope(services.engine) as session:
            token = rotate_token(session, name)
    except NotFound as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", highlight=False)
        raise typer.Exit(2) from None
    errors.print(f"team {name}: new token (store it now, it is not shown again):",
                 markup=False)
    sys.stdout.write(token + "\n")  # stdout: just the token, for scripts


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(  # 99999 was uvicorn's 130-line traceback
              min=1, max=65535, help="Port.")] = 8000,
          worker: Annotated[bool | None, typer.Option(
              "--worker/--no-worker",
              help="Run production in this process's embedded worker. Default: on unless "
                   "PREFECT_API_URL is set (then deployments do the work).")] = None) -> None:
    """Start the review service: API at /api (docs at /docs), review page at /."""
    import uvicorn

    from app.service import create_app
    from app.worker import EmbeddedWorker

    _configure_prefect(verbose=False)
    settings = load_settings()
    with Services(settings) as services:  # a missing S3 bucket or unusable folder ends here,
        services.store  # noqa: B018 - one line and exit 1, not a 503 on every submission
    listening = _listen(host, port)  # before the worker starts: a busy port ends here
    embedded = None
    if worker if worker is not None else not settings.prefect_api_url:
        embedded = EmbeddedWorker(settings)
        embedded.start()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=host, port=port,
                                           log_level="info", access_log=False))
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address, as a URL writes it
    errors.print(f"review service on http://{shown}:{port}/ (API docs: /docs); "
                 f"production: {_production_by(embedded is not None, settings)}")
    stopped_by = None
    # uvicorn stops gracefully on SIGINT and SIGTERM, then raises the signal again under the
    # handler it found. SIGTERM's default handler ended the process there, before the worker's
    # run was stopped, which then went on alone (its own session) to the end of its brief.
    # Under Python's default SIGINT handler asyncio's runner takes the raised Ctrl-C as a
    # cancel of a task that has already finished, and serve exited 0 now and then.
    found = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[listening])
    except _Stopped as stop:
        stopped_by = stop.exit_code
    finally:
        listening.close()
        for sig, handler in found.items():  # a second Ctrl-C or SIGTERM: no wait for the run
            signal.signal(sig, handler)
        if embedded is not None:
            embedded.stop()
    if stopped_by is not None:
        raise typer.Exit(stopped_by)


class _Stopped(Exception):
    """Ctrl-C or SIGTERM (a service manager's stop, `kill`), raised where the main thread is."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped(INTERRUPTED_EXIT if signum == signal.SIGINT else TERMINATED_EXIT)


def _listen(host: str, port: int) -> socket.socket:
    """The service's listening socket, bound here so that a port in use, or an address this
    machine does not have, is one line and exit 1: uvicorn logged the error and exited 3 after
    the embedded worker had started (and taken a brief)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise _ServeRefused(f"cannot listen on {host}: {err.strerror}") from None
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        listening.bind(address)
        listening.listen(2048)
    except OSError as err:
        listening.close()
        said = {errno.EADDRINUSE: "it is in use (another service, or this one running "
                                  "already): choose another with --port",
                errno.EADDRNOTAVAIL: f"{host} is not an address of this machine",
                errno.EACCES: "ports under 1024 need privileges: choose another with --port",
                }.get(err.errno or 0, err.strerror)
        raise _ServeRefused(f"cannot listen on {host} port {port}: {said}") from None
    listening.set_inheritable(True)
    return listening


class _ServeRefused(Exception):
    """The service could not start listening (exit 1)."""


def _production_by(embedded: bool, settings: Settings) -> str:
    """Who produces the briefs this service takes (said at start: with --no-worker and no
    Prefect server nothing does, and briefs wait)."""
    if embedded:
        return "embedded worker"
    if settings.prefect_api_url:
        return f"Prefect deployments at {settings.prefect_api_url}"
    return ("none: --no-worker without PREFECT_API_URL, so briefs wait until `mova-ads run` "
            "or a worker takes them")


def demo_choice(settings: Settings, *, random_weights: bool) -> tuple[dict[str, str], Path]:
    """What `demo` runs: the settings to add to the environment, and the brief. The demo model
    with its render profile and the demo brief, unless a model is configured (MOVA_CHECKPOINT:
    the example brief on it), random weights are asked for, or the folder is missing."""
    if settings.mova_checkpoint is not None or random_weights \
            or not (DEMO_MODEL / "model_index.json").is_file():
        return {}, EXAMPLE_BRIEF
    environment = {"MOVA_CHECKPOINT": str(DEMO_MODEL)}
    if settings.mova_render_profile == "tiny":  # the default: the demo model's own settings
        environment["MOVA_RENDER_PROFILE"] = "demo"
    return environment, DEMO_BRIEF


@app.command()
def demo(verbose: Annotated[bool, typer.Option(
             "--verbose", "-v", help="Show Prefect's flow and task logs (INFO).")] = False,
         random_weights: Annotated[bool, typer.Option(
             "--random-weights", help="The random `tiny` preset and examples/brief.yaml "
             "instead of the demo model (pipeline and formats only: noise for content).")] = False,
         ) -> None:
    """Submit the demo brief and produce it with the demo model (or random tiny weights)."""
    settings = load_settings()
    environment, brief = demo_choice(settings, random_weights=random_weights)
    if environment:
        # Environment, not arguments: the flows and the render actors read their settings.
        os.environ.update(environment)
        settings = load_settings()
        console.print(f"the demo model ({DEMO_MODEL.relative_to(ROOT)}, trained here on a "
                      f"synthetic world) renders {brief.relative_to(ROOT)}")
    else:
        ensure_checkpoint(settings)
    submit(brief)
    run(verbose=verbose)
    with _services() as services, session_scope(services.engine) as session:
        spots = [row for row in repo.campaign_deliverables(session, None)
                 if row.kind == repo.DeliverableKind.SPOT and row.published_uri]
        console.print("\n[bold]finished spots[/] (one per language x format):")
        for row in spots:
            console.print(f"  {row.locale:<6} {row.aspect:<5} {row.published_uri}",
                          markup=False, highlight=False, soft_wrap=True)
    console.print(f"[bold]deliverables are in[/] {escape(settings.storage)}/campaigns/")


def main() -> None:
    """The `mova-ads` console entry point: run the command, then end the process."""
    _exit_now(run_command())


def run_command() -> int | str | None:
    """Run the command in sys.argv with Prefect's environment set first; its exit code."""
    try:
        _prefect_environment()
        app()
    except (NotFound, SettingsInvalid) as err:
        errors.print(f"[red]error:[/] {escape(str(err))}", markup=True, highlight=False)
        return 2
    except OperationalError as err:  # the database is down, elsewhere or refuses us
        errors.print(f"error: {_database_problem(err)}", markup=False, highlight=False)
        return 1
    except DatabaseError as err:  # (its IntegrityError and kin are bugs: their traceback)
        # a SQLite file that is no database ("file is not a database"), or a damaged one; a
        # PostgreSQL schema missing a table or a column (SQLite's "no such table" is an
        # OperationalError, PostgreSQL's a ProgrammingError)
        if type(err) is not DatabaseError and not _schema_missing(err):
            raise
        errors.print(f"error: {_database_problem(err)}", markup=False, highlight=False)
        return 1
    except CommandError as err:  # alembic's: a schema revision this version does not know
        errors.print(f"error: the database cannot be migrated: {err}\n  DATABASE_URL is "
                     f"{_database_shown()}; a newer mova-ads has migrated it (run that one), or "
                     "it is another program's database", markup=False, highlight=False)
        return 1
    except StorageError as err:
        errors.print(f"error: storage: {err}", markup=False, highlight=False)
        return 1
    except _ServeRefused as err:
        errors.print(f"error: {err}", markup=False, highlight=False)
        return 1
    except Exception as err:
        if not _prefect_server_failed(err):
            raise
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME

        where = PREFECT_API_URL.value() or f"the temporary one, data in {PREFECT_HOME.value()}"
        errors.print(f"error: the Prefect server ({where}) failed: {first_line(err)}. Check "
                     "its log and free disk space; finished work is kept and 'mova-ads run' "
                     "produces the rest", markup=False, highlight=False)
        return 1
    except SystemExit as done:  # how typer ends every command
        return done.code
    return 0


def _database_shown() -> str:
    """The database URL tried, without its password."""
    return _database_url().render_as_string(hide_password=True)


def _database_url() -> URL:
    return make_url(load_settings().database)


def _schema_missing(err: DatabaseError) -> bool:
    """PostgreSQL's undefined table or column: the database is not the one mova-ads made."""
    return getattr(err.orig, "sqlstate", None) in ("42P01", "42703")


def _database_problem(err: DatabaseError) -> str:
    """One paragraph for an operator, instead of SQLAlchemy's traceback: the driver's own
    words and the URL (without its password) that was tried."""
    cause = str(err.orig).strip() if err.orig is not None else str(err)
    url = _database_url()
    # SQLite has no server: a wrong path, a file that is no mova-ads database or a folder this
    # user cannot write (SQLite's "unable to open database file") is the cause
    if _schema_missing(err):
        cause = cause.splitlines()[0]  # (not the query it was in)
        check = "the URL names mova-ads' database: this one lacks what its migrations made"
    elif url.get_backend_name() == "sqlite":
        check = "the URL names a mova-ads database file, in a folder you can write"
    else:
        check = "the server is running and the URL is right"
    return (f"the database cannot be used: {cause}\n  DATABASE_URL is "
            f"{url.render_as_string(hide_password=True)}; check that {check}")


INTERRUPTED_EXIT = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
TERMINATED_EXIT = 143  # 128 + SIGTERM


def _stop_on_interrupt() -> None:
    """Ctrl-C during a production run ends it within seconds. Left to Prefect, the interrupt
    crashed the running task, Prefect's temporary server (in the same process group) died with
    it, and the run went on to the next brief retrying the dead server: minutes of connection
    tracebacks before it exited. Nothing is lost by stopping at once: finished renders and files
    are recorded as they complete, and the next `run` takes the unfinished briefs up again
    (a run killed outright recovers the same way). A second Ctrl-C skips the clean-up."""
    from infra.leftover_processes import adopt_orphans, end_descendants

    adopt_orphans()

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, lambda *_: os._exit(INTERRUPTED_EXIT))
        errors.print("\ninterrupted: stopping. Finished work is kept; 'mova-ads run' produces "
                     "the rest.", markup=False, highlight=False)
        # Ray's shutdown and Prefect's server stop (atexit), bounded: either may wait on a
        # process the Ctrl-C already ended.
        cleanup = threading.Thread(target=atexit._run_exitfuncs, daemon=True)
        cleanup.start()
        cleanup.join(timeout=10)
        # what they left, or what started meanwhile: Prefect's server, started on a thread the
        # Ctrl-C does not stop, can come up after its stop handler had its turn
        end_descendants()
        _flush_and_exit(INTERRUPTED_EXIT)

    signal.signal(signal.SIGINT, stop)


def _exit_now(code: int | str | None) -> None:
    """End the process as the interpreter would, up to its finalisation: wait for the threads
    it waits for, run the atexit handlers (Ray's shutdown, Prefect's temporary server stop,
    logging's flush), then stop without tearing every module down, which with torch and Ray
    loaded takes about 2 s of a process that ends anyway."""
    if isinstance(code, str):
        errors.print(code, markup=False, highlight=False)
    threading._shutdown()  # type: ignore[attr-defined]  # (the first step of Py_Finalize)
    atexit._run_exitfuncs()
    _flush_and_exit(code if isinstance(code, int) else (0 if code is None else 1))


def _prefect_server_failed(err: Exception) -> bool:
    """An error answer from Prefect's server (a 500 when its database is on a full disk: the
    run ended in a traceback thousands of lines after the cause). Checked without importing
    Prefect, which a command that never ran a flow has not loaded."""
    exceptions = sys.modules.get("prefect.exceptions")
    return exceptions is not None and isinstance(err, exceptions.PrefectHTTPStatusError)


def _flush_and_exit(status: int) -> None:
    """Flush what was printed and end the process at once with `status`."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a reader gone (`| head`) is not an error here
            stream.flush()
    os._exit(status)


__all__ = ["main", "app", "UUID"]

if __name__ == "__main__":  # `python -m app.cli`: the embedded worker's child runs
    main()

"""Time whole campaigns: briefs of 4, 24 and 120 deliverables produced end to end on the tiny
model with the local defaults (SQLite, local storage, local Ray, Prefect's ephemeral server).

    .venv/bin/python bench/campaign.py [--sizes 4 24 120] [--work DIR] [--brief FILE]

Each size runs in a fresh data folder, in its own process (Prefect and Ray start clean). The
figures come from what the run recorded, not from guesses:
- wall: the production run (`ingest_briefs(produce=True)`), timed around the call; Prefect's
  ephemeral server is started before the clock (a one-off, printed as prefect_start_s);
- render / finishing / publishing / planning: the time covered by Prefect's task runs of each
  kind (their recorded start and end; overlapping runs counted once). The render task includes
  starting the Ray pool and loading the model on its actors;
- model_s: the seconds the render workers spent per render (render_job.seconds), summed;
- orchestration overhead = wall - critical path, the critical path being the time some task was
  running (the union of all task runs; a subflow's placeholder run is not a task): what the
  flows themselves cost between and around tasks;
- renders executed (render jobs run) against deliverables, and seconds per deliverable.

Prints one JSON line per size, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOCALES = ["en-US", "de-DE", "ar-SA", "zh-CN", "fr-FR", "ja-JP", "es-ES", "pt-BR"]
LINES = {"en-US": "Every morning starts with one step.", "de-DE": "Jeder Morgen beginnt hier.",
         "ar-SA": "كل صباح يبدأ بخطوة واحدة.", "zh-CN": "每个早晨都从一步开始。",
         "fr-FR": "Chaque matin commence par un pas.", "ja-JP": "毎朝は一歩から始まる。",
         "es-ES": "Cada mañana empieza con un paso.", "pt-BR": "Toda manhã começa com um passo."}
# deliverables -> (scenes, locales, aspects); the odd scenes speak, the even ones have no
# dialogue (one render serves every language). 24 is issue 15's brief itself.
SHAPES = {4: (1, 2, 2), 24: (2, 4, 3), 120: (5, 8, 3)}
ISSUE_BRIEF = ROOT / "bench" / "briefs" / "issue15-2x4x3.yaml"
ASPECTS = ["16:9", "9:16", "1:1"]
# Task runs by task name. Anything else is a subflow's placeholder run in its parent flow
# (it spans the whole subflow, so counting it would hide the overhead): left out.
TASK_KINDS = {"render.generate": "render", "finish.variant": "finishing",
              "spot.assemble": "finishing",
              "publish.deliverable": "publishing", "plan.variants": "planning",
              "ingest.claim": "planning", "production.open": "bookkeeping",
              "production.close": "bookkeeping"}


def task_kind(run_name: str) -> str | None:
    """The kind of a task run from its name (`<task name>-<suffix>`), None when not a task."""
    return TASK_KINDS.get(run_name.rsplit("-", 1)[0])


def campaign_brief(deliverables: int) -> dict[str, Any]:
    if deliverables == 24:
        return dict(yaml.safe_load(ISSUE_BRIEF.read_text()))
    scenes, locales, aspects = SHAPES[deliverables]
    chosen = LOCALES[:locales]
    brief: dict[str, Any] = {
        "campaign": f"bench-{deliverables}", "brand": "Aurora", "product": "Aurora One",
        "locales": chosen, "platforms": ["youtube"], "aspects": ASPECTS[:aspects],
        "dubbing": "lipsync", "loudness_profile": "web", "max_qc_retries": 1, "seed": 1234,
        "scenes": []}
    for index in range(scenes):
        scene: dict[str, Any] = {"scene_id": f"scene-{index + 1}", "duration_s": 1.0,
                                 "visual": f"Shot {index + 1}: a runner in orange shoes by a "
                                           "river at sunrise."}
        if index % 2 == 0:
            scene["dialogue"] = {loc: [{"speaker": "Runner", "text": LINES[loc]}]
                                 for loc in chosen}
        brief["scenes"].append(scene)
    return brief


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _task_intervals(since: datetime) -> dict[str, list[tuple[float, float]]]:
    """Prefect's recorded task runs started after `since`, by kind: (start, end) epochs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    by_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with get_client(sync_client=True) as client:
        offset = 0
        while runs := client.read_task_runs(
                task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(after_=since)),
                limit=200, offset=offset):
            offset += len(runs)
            for run in runs:
                if run.start_time is None or run.end_time is None:
                    continue
                kind = task_kind(run.name)
                if kind is not None:
                    by_kind[kind].append((run.start_time.timestamp(), run.end_time.timestamp()))
    return by_kind


def run_one(brief_path: Path) -> dict[str, Any]:
    """In the child process: submit, produce, and read back what the run recorded."""
    from datetime import UTC

    from sqlalchemy import select

    from flows.ingest import ingest_briefs
    from infra.db import session_scope
    from infra.db_models import Deliverable, RenderJob
    from infra.settings import load_settings
    from mova_model.make_checkpoint import make_checkpoint
    from tasks.services import Services
    from tasks.submission import submit_brief

    settings = load_settings()
    if not (settings.checkpoint / "model_index.json").is_file():
        make_checkpoint(settings.checkpoint, preset="tiny", seed=0, overwrite=True)
    with Services(settings) as services:
        submit_brief(services, brief_path.read_bytes(), fmt="yaml", base_dir=brief_path.parent)
    started = time.monotonic()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # start the ephemeral server off the clock
        client.hello()
    prefect_start = time.monotonic() - started
    since = datetime.now(UTC)
    clock = time.monotonic()
    ingest_briefs(limit=1, produce=True)
    wall = time.monotonic() - clock
    intervals = _task_intervals(since)
    with Services(settings) as services, session_scope(services.engine) as session:
        jobs = list(session.scalars(select(RenderJob)))
        rows = list(session.scalars(select(Deliverable)))
        statuses = sorted({str(r.status) for r in rows})
        model_s = sum(j.seconds or 0.0 for j in jobs)
        executed = sum(j.attempts for j in jobs)
    critical = union_seconds([i for kind in intervals.values() for i in kind])
    split = {kind: round(union_seconds(intervals.get(kind, [])), 2)
             for kind in ("render", "finishing", "publishing", "planning", "bookkeeping")}
    return {"deliverables": len(rows), "statuses": statuses, "renders_executed": executed,
            "render_jobs": len(jobs), "wall_s": round(wall, 2),
            "prefect_start_s": round(prefect_start, 2), **{f"{k}_s": v for k, v in split.items()},
            "model_s": round(model_s, 2), "critical_path_s": round(critical, 2),
            "overhead_s": round(wall - critical, 2),
            "overhead_per_deliverable_s": round((wall - critical) / max(len(rows), 1), 3),
            "s_per_deliverable": round(wall / max(len(rows), 1), 2)}


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 24, 120],
                        choices=sorted(SHAPES))
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the runs' data (default: a temporary one)")
    parser.add_argument("--brief", type=Path, default=None,
                        help="time this brief instead of the generated sizes")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="tiny checkpoint folder (made there if missing)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _say("RESULT " + json.dumps(run_one(args.child)))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="mova-campaign-"))
    checkpoint = args.checkpoint or work / "tiny-checkpoint"
    jobs = [(args.brief.stem, args.brief.resolve())] if args.brief else []
    for size in ([] if args.brief else args.sizes):
        path = work / f"brief-{size}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(campaign_brief(size), allow_unicode=True))
        jobs.append((str(size), path))
    results = []
    for name, brief in jobs:
        data = work / f"run-{name}"
        env = {**os.environ, "MOVA_DATA_DIR": str(data), "MOVA_CHECKPOINT": str(checkpoint),
               "PREFECT_HOME": str(data / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_LOGGING_LEVEL": "WARNING",
               "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600"}
        clock = time.monotonic()
        done = subprocess.run([sys.executable, __file__, "--child", str(brief)], env=env,
                              cwd=ROOT, capture_output=True, text=True, check=False)
        process_s = round(time.monotonic() - clock, 2)  # imports, submit, Prefect start too
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode or not lines:
            sys.exit(f"run {name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        result = {"brief": name, **json.loads(lines[-1].removeprefix("RESULT ")),
                  "process_s": process_s}
        _say(json.dumps(result))
        results.append(result)
    columns = ["brief", "deliverables", "renders_executed", "wall_s", "render_s", "finishing_s",
               "publishing_s", "planning_s", "overhead_s", "overhead_per_deliverable_s",
               "s_per_deliverable"]
    _say(" | ".join(columns))
    for result in results:
        _say(" | ".join(str(result[c]) for c in columns))


if __name__ == "__main__":
    main()

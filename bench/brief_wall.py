"""Time a brief as a user runs it, `mova-ads submit` then `mova-ads run`, with the checkouts
given, one after the other in one sitting (issue 15: today's code against an earlier one).

    .venv/bin/python bench/brief_wall.py [--tree DIR ...] [--brief FILE] [--work DIR]
                                         [--rounds N] [--settle SECONDS]

Each --tree is a checkout with its own installed `.venv` (default: this one). To compare with an
earlier commit: `git worktree add ../before <commit> && make -C ../before install`, then
`--tree ../before --tree .`. Each run gets a fresh data folder (SQLite, local storage, local Ray,
Prefect's ephemeral server with its own PREFECT_HOME) and the tiny checkpoint made by that tree
before the clock starts. The wall time covers both commands, start-ups included; the CPU time
is that of everything they ran. From what the run recorded: the span of its flows, the time
covered by each kind of task (Prefect's task runs, read from the run's own Prefect database),
the renders executed and their model seconds, and the deliverables published. With several
rounds (the trees' order turning each round, a rest before each run), a last line gives each
tree's median wall time and the last tree's ratio to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from campaign import ISSUE_BRIEF, task_kind, union_seconds  # noqa: E402

MAKE_CHECKPOINT = ("from pathlib import Path; from mova_model.make_checkpoint import "
                   "make_checkpoint; make_checkpoint(Path({path!r}), preset='tiny', seed=0, "
                   "overwrite=True)")


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace(" ", "T")).timestamp()


def prefect_split(database: Path) -> dict[str, float]:
    """Flow span and the seconds covered by each kind of task, from Prefect's SQLite file."""
    with sqlite3.connect(database) as db:
        flows = db.execute("select min(start_time), max(end_time) from flow_run").fetchone()
        tasks = db.execute("select name, start_time, end_time from task_run "
                           "where start_time is not null and end_time is not null").fetchall()
    by_kind: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, start, end in tasks:
        if (kind := task_kind(name)) is not None:
            by_kind[kind].append((_epoch(start), _epoch(end)))
    split = {f"{kind}_s": round(union_seconds(spans), 1) for kind, spans in by_kind.items()}
    split["flow_span_s"] = round(_epoch(flows[1]) - _epoch(flows[0]), 1) if flows[0] else 0.0
    return split


def run_records(database: Path) -> dict[str, object]:
    """Renders executed, their summed model seconds, and deliverables by status."""
    with sqlite3.connect(database) as db:
        seconds = [row[0] for row in db.execute("select seconds from render_job")
                   if row[0] is not None]
        statuses = dict(db.execute("select status, count(*) from deliverable group by status")
                        .fetchall())
    return {"renders": len(seconds), "model_s": round(sum(seconds), 1),
            "deliverables": statuses}


def _children_cpu_s() -> float:
    """User + system CPU seconds of every finished descendant waited for: the two commands and
    what they ran (ffmpeg, Prefect's server, Ray's processes and actors, reaped at shutdown).
    On a CPU-bound run, the wall time is at least this over the number of cores."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_tree(tree: Path, brief: Path, work: Path) -> dict[str, object]:
    cli = tree / ".venv" / "bin" / "mova-ads"
    if not cli.is_file():
        raise SystemExit(f"{tree}: no {cli.relative_to(tree)} (run `make install` there)")
    work.mkdir(parents=True)
    env = {**os.environ, "MOVA_DATA_DIR": str(work / "data"),
           "PREFECT_HOME": str(work / "prefect")}
    checkpoint = work / "data" / "checkpoints" / "tiny"
    subprocess.run([str(tree / ".venv" / "bin" / "python"), "-c",
                    MAKE_CHECKPOINT.format(path=str(checkpoint))], env=env, check=True,
                   capture_output=True)
    (work / "brief.yaml").write_bytes(brief.read_bytes())
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    start, cpu_before = time.perf_counter(), _children_cpu_s()
    with (work / "cli.log").open("w") as log:
        for command in (["submit", "brief.yaml"], ["run"]):
            done = subprocess.run([str(cli), *command], cwd=work, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
            if done.returncode != 0:
                raise SystemExit(f"{tree}: mova-ads {' '.join(command)} failed "
                                 f"(exit {done.returncode}); see {work / 'cli.log'}")
    wall = time.perf_counter() - start
    return {"tree": str(tree), "commit": commit, "wall_s": round(wall, 1),
            "cpu_s": round(_children_cpu_s() - cpu_before, 1),
            **prefect_split(work / "prefect" / "prefect.db"),
            **run_records(work / "data" / "mova_ads.db")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, action="append",
                        help="a checkout with its .venv (repeat; default: this one)")
    parser.add_argument("--brief", type=Path, default=ISSUE_BRIEF)
    parser.add_argument("--work", type=Path, default=Path("/tmp") / f"brief-wall-{os.getpid()}")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs of each tree; the order turns every round (A B, B A, ...)")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="seconds of rest before each run (the last run's processes end)")
    args = parser.parse_args()
    if args.rounds < 1 or args.settle < 0:
        parser.error("--rounds must be positive and --settle not negative")
    trees = [tree.resolve() for tree in args.tree or [ROOT]]
    emit({"brief": str(args.brief), "cpu_cores": os.cpu_count(),
          "machine": platform.machine(), "load_before": round(os.getloadavg()[0], 2),
          "rounds": args.rounds})
    walls: dict[Path, list[float]] = defaultdict(list)
    for round_index in range(args.rounds):
        order = trees if round_index % 2 == 0 else trees[::-1]
        for tree in order:
            time.sleep(args.settle)
            line = time_tree(tree, args.brief,
                             args.work / f"{round_index}-{trees.index(tree)}-{tree.name}")
            walls[tree].append(float(line["wall_s"]))  # type: ignore[arg-type]
            emit({"round": round_index, **line})
    if args.rounds > 1 or len(trees) > 1:
        medians = {str(tree): round(statistics.median(walls[tree]), 1) for tree in trees}
        summary: dict[str, object] = {"median_wall_s": medians}
        if len(trees) > 1:  # the last tree against the first
            summary["ratio_last_to_first"] = round(medians[str(trees[-1])]
                                                   / medians[str(trees[0])], 3)
        emit(summary)


def emit(line: dict[str, object]) -> None:
    """One JSON line, written at once (a long comparison shows each run as it ends)."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

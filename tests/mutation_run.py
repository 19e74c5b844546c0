"""Run mutmut on one module at a time, each against its own fast tests.

    python tests/mutation_run.py 'infra.storage.*' ['tasks.qc.*' ...] [--jobs N]
    python tests/mutation_run.py MUTANT_NAME ...    # check these mutants again (new tests)
    python tests/mutation_run.py --resume 'infra.storage.*'  # only mutants with no result yet
    python tests/mutation_run.py --survivors 'infra.storage.*'  # survivors again (new tests)
    python tests/mutation_run.py --survivors --resume 'infra.storage.*'  # both, in one run

mutmut takes its test selection from [tool.mutmut] and throws away every cached result when the
selection changes, so one selection cannot serve modules whose tests differ this much (a storage
mutant needs the moto server, a pipeline mutant the tiny model). Each module therefore gets a
work directory of its own, mutants/<module>/, holding links to the sources and a pyproject.toml
that is [tool.mutmut] with only that module mutated and that module's tests from
[tool.mova-mutation.tests]; mutmut runs there and keeps its results (mutants/<module>/mutants/).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutants"
# Each module's last results (mutmut's .meta: exit code per mutant, hash per function), kept in
# the repository: a run on another machine or checkout starts from them, and mutmut keeps a
# result only while its function's hash is unchanged (changed functions are checked again).
RESULTS = ROOT / "tests" / "mutation_results"
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.md"
# Address space each mutmut process may take: a mutant that loops while it allocates (e.g. a
# lineage walk that never ends) then fails its test with MemoryError instead of taking the
# machine's memory; a normal test process of this suite stays under 3 GB.
MEMORY_LIMIT_BYTES = int(float(os.environ.get("MUTATION_MEMORY_GB", "8")) * 2**30)


def settings() -> tuple[dict[str, object], dict[str, list[str]], dict[str, object]]:
    """mutmut's base config, the tests of each mutated file, and pytest's own settings."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    suites = config["mova-mutation"].get("suites", {})
    tests = {path: [test for item in selection
                    for test in (suites[item[1:]] if item.startswith("@") else [item])]
             for path, selection in config["mova-mutation"]["tests"].items()}
    return config["mutmut"], tests, config["pytest"]["ini_options"]


def source_file(pattern: str, paths: list[str]) -> str:
    """The mutated file a mutant-name glob or a mutant's name belongs to:
    'infra.storage.*' and 'infra.storage.x_open_store__mutmut_3' -> 'infra/storage.py'."""
    for path in paths:
        if pattern.startswith(path.removesuffix(".py").replace("/", ".") + "."):
            return path
    sys.exit(f"{pattern!r} names no module of [tool.mova-mutation.tests]")


def module_name(path: str) -> str:
    """'infra/storage.py' -> 'infra.storage', as mutmut names the module's mutants."""
    return path.removesuffix(".py").replace("/", ".")


def work_dir(path: str) -> Path:
    return WORK / module_name(path)


def meta_file(path: str) -> Path:
    """mutmut's results for the module, in its work directory."""
    return work_dir(path) / "mutants" / f"{path}.meta"


def results_file(path: str) -> Path:
    """The module's results as kept in the repository."""
    return RESULTS / f"{module_name(path)}.json"


def latest_results(path: str) -> Path:
    """This machine's results for the module when it ran here, else the kept ones."""
    return meta_file(path) if meta_file(path).exists() else results_file(path)


def equivalent_mutants() -> set[str]:
    """Mutant names listed as `- \\`name\\`: reason` in the equivalents file."""
    if not EQUIVALENTS.exists():
        return set()
    return set(re.findall(r"^- `([^`]+)`:", EQUIVALENTS.read_text(), flags=re.M))


# mutmut's exit codes of a mutant no test killed: survived, and "no tests" (no test of the
# selection called its function; new tests may now)
UNKILLED = {0, 5, 33}


def survivors(path: str, *, unchecked: bool = False) -> list[str]:
    """The module's mutants that no test killed at their last check (survived, or had no test)
    and are not listed as equivalent; with `unchecked`, also those never checked."""
    meta = latest_results(path)
    codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    equivalent = equivalent_mutants()
    wanted = UNKILLED | {None} if unchecked else UNKILLED
    return sorted(name for name, code in codes.items()
                  if code in wanted and name not in equivalent)


def mutmut_runs(path: str, patterns: list[str], *, resume: bool,
                survivors_only: bool) -> list[list[str]]:
    """The mutmut runs to make, each as the names to give it: mutmut checks again every mutant
    it is given by name (a glob too) and, given no names, only those without a result (never
    checked, or of a function whose code changed since: those exist only once mutmut has made
    the mutants again, so they are not in the results read here). Empty: nothing to check."""
    if not survivors_only:
        return [[]] if resume else [patterns]
    if resume and not latest_results(path).exists():
        return [[]]  # never run here: every mutant is unchecked
    runs = [names] if (names := survivors(path, unchecked=resume)) else []
    return [*runs, []] if resume else runs


def restore_results(path: str) -> None:
    """A new work directory starts from the kept results (mutmut then drops those of every
    function whose code changed since)."""
    meta, kept = meta_file(path), results_file(path)
    if kept.exists() and not meta.exists():
        meta.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(kept, meta)


def drop_stale_stats(path: str) -> None:
    """mutmut records once which tests reach each function and later only adds new tests to
    that record, so a function added or renamed since would count as having "no tests". When
    the results name a function the record lacks, the record goes and mutmut takes it again
    (a test run of the module's selection)."""
    stats, meta = work_dir(path) / "mutants" / "mutmut-stats.json", meta_file(path)
    try:
        recorded = set(json.loads(stats.read_text())["tests_by_mangled_function_name"])
        functions = {name.rsplit("__mutmut_", 1)[0]
                     for name in json.loads(meta.read_text())["exit_code_by_key"]}
    except (OSError, json.JSONDecodeError, KeyError):
        return
    if functions - recorded:
        stats.unlink()


def keep_results(path: str) -> None:
    """Copy the module's results into the repository (after a run, finished or not)."""
    meta = meta_file(path)
    try:
        json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return  # no results, or cut off while mutmut wrote them
    RESULTS.mkdir(exist_ok=True)
    shutil.copyfile(meta, results_file(path))


def limit_memory() -> None:
    """Run in the mutmut process before it starts (inherited by its workers)."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def toml_table(name: str, values: dict[str, object]) -> str:
    # Strings, numbers, booleans and lists of strings are written the same in JSON and TOML.
    return f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n"
                                   for key, value in values.items())


def prepare(path: str, *, debug: bool = False) -> Path:
    """The module's work directory: links to everything mutmut copies, and its own config."""
    base, tests, pytest_options = settings()
    if path not in tests:
        sys.exit(f"{path} has no test selection in [tool.mova-mutation.tests]")
    work = work_dir(path)
    work.mkdir(parents=True, exist_ok=True)
    for name in [*base["source_paths"], *base.get("also_copy", []), "tests"]:
        link = work / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    config = {**base, "only_mutate": [path], "pytest_add_cli_args_test_selection": tests[path],
              # the work directory is not the repository root: compare files, not git history
              "use_git_change_detection": False, "debug": debug}
    (work / "pyproject.toml").write_text(toml_table("tool.mutmut", config) + "\n"
                                         + toml_table("tool.pytest.ini_options", pytest_options))
    return work


@contextmanager
def shared_s3_server() -> Iterator[dict[str, str]]:
    """One moto server for the whole run, named to the tests by MOVA_TEST_S3_ENDPOINT: without
    it each mutant's test session would start its own, seconds per mutant on a loaded machine."""
    if os.environ.get("MOVA_TEST_S3_ENDPOINT"):
        yield {}
        return
    sys.path.insert(0, str(ROOT))
    from tests.servers import free_port, wait_until_up

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, timeout=60)
        yield {"MOVA_TEST_S3_ENDPOINT": url}
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("patterns", nargs="+", help="mutant-name globs, e.g. 'infra.storage.*'")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--debug", action="store_true", help="show mutmut's pytest output")
    parser.add_argument("--resume", action="store_true", help=(
        "run only the mutants of the named modules that have no result yet (an interrupted "
        "run); by default every mutant the patterns name is checked again"))
    parser.add_argument("--survivors", action="store_true", help=(
        "check again only the named modules' survivors and no-test mutants that are not "
        "listed as equivalent (after adding tests); with --resume, then (a second mutmut "
        "run) those never checked or whose function changed"))
    args = parser.parse_args()
    mutmut = Path(sys.executable).with_name("mutmut")
    failed = 0
    paths = list(settings()[1])
    by_file: dict[str, list[str]] = {}
    for pattern in args.patterns:  # one mutmut run per module, in the order first named
        by_file.setdefault(source_file(pattern, paths), []).append(pattern)
    with shared_s3_server() as env:
        for path, patterns in by_file.items():
            print(f"== mutmut: {' '.join(patterns)} ({path})", flush=True)  # noqa: T201
            work = prepare(path, debug=args.debug)
            restore_results(path)
            runs = mutmut_runs(path, patterns, resume=args.resume, survivors_only=args.survivors)
            if not runs:
                print(f"{path}: no survivors to check again", flush=True)  # noqa: T201
                continue
            # each of the --jobs test processes gets its share of the cores: torch would
            # otherwise start a thread per core in each, and they would fight over them
            threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
            for names in runs:
                drop_stale_stats(path)  # mutmut's first run made a changed module's mutants
                try:
                    code = subprocess.call(["nice", str(mutmut), "run", "--max-children",
                                            str(args.jobs), *names], cwd=work,
                                           env={"OMP_NUM_THREADS": threads, **os.environ, **env},
                                           preexec_fn=limit_memory)
                finally:
                    keep_results(path)
                if code:
                    print(f"mutmut: no result for {path} (exit {code})", flush=True)  # noqa: T201
                    failed += 1
                    break
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

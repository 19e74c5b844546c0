"""Per-module mutation figures from mutmut's results (each module's work directory, see
tests/mutation_run.py, or, for a module not run here, the results kept in
tests/mutation_results/, marked "kept"): killed, survived, equivalent (survivors listed with a
reason in tests/mutation_equivalents.md), and the score.

    python tests/mutation_report.py            # every module mutmut has results for
"""

from __future__ import annotations

import ast
import json
import sys
import tomllib
from collections import Counter

# run as a script: tests/ is on the path
from mutation_run import (
    EQUIVALENTS,
    ROOT,
    equivalent_mutants,
    latest_results,
    meta_file,
    module_name,
)

# mutmut's exit codes: 1 and 3 are kills (a test failed / pytest errored), 0 a survivor
KILLED, SURVIVED = {1, 3}, {0}
TIMEOUT = {36, 24, -24, 152, 255}
NO_TESTS = {5, 33}


def module_figures(codes: dict[str, int | None], equivalent: set[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name, code in codes.items():
        if code is None:
            counts["not checked"] += 1
        elif code in KILLED:
            counts["killed"] += 1
        elif code in TIMEOUT:
            counts["timeout"] += 1  # the mutant hung: the tests noticed, counted as killed
        elif code in SURVIVED | NO_TESTS and name in equivalent:  # checked: see stale_entries
            counts["equivalent"] += 1  # e.g. a Protocol's stub body, which never runs
        elif code in SURVIVED:
            counts["survived"] += 1
        elif code in NO_TESTS:
            counts["no tests"] += 1
        else:
            counts["other"] += 1
    return counts


def stale_entries(module: str, codes: dict[str, int | None], equivalent: set[str]) -> list[str]:
    """Entries of the equivalents file for `module` (its path) that name a mutant the tests
    kill or mutmut no longer makes: mutant numbers move when the code changes, so an old entry
    could otherwise excuse a different, real survivor."""
    prefix = module_name(module) + ".x"  # mutmut's mutant names
    return sorted(name for name in equivalent if name.startswith(prefix)
                  and (name not in codes or codes[name] in KILLED | TIMEOUT))


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    equivalent = equivalent_mutants()
    columns = ["killed", "timeout", "survived", "no tests", "equivalent", "not checked", "other"]
    print(f"{'module':32} " + " ".join(f"{c:>11}" for c in columns) + "      score")  # noqa: T201
    totals: Counter[str] = Counter()
    for module in config["only_mutate"]:
        meta = latest_results(module)
        if not meta.exists():
            print(f"{module:32} " + ("(not run)" if has_mutable_functions(module) else  # noqa: T201
                                     "(no mutants: no undecorated function bodies)"))
            continue
        try:
            codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        except json.JSONDecodeError:  # mutmut is rewriting it right now
            print(f"{module:32} (results being written: run the report again)")  # noqa: T201
            continue
        counts = module_figures(codes, equivalent)
        totals += counts
        print(f"{module:32} " + " ".join(f"{counts[c]:>11}" for c in columns)  # noqa: T201
              + f"  {score(counts)}" + ("" if meta == meta_file(module) else "  (kept)"))
        for name in stale_entries(module, codes, equivalent):
            print(f"    stale entry in {EQUIVALENTS.name}: {name} (killed or gone)")  # noqa: T201
    print(f"{'total':32} " + " ".join(f"{totals[c]:>11}" for c in columns)  # noqa: T201
          + f"  {score(totals)}")
    return 0


def has_mutable_functions(module: str) -> bool:
    """Whether mutmut makes mutants of the module: it mutates the bodies of functions and
    methods, except decorated ones (@staticmethod and @classmethod alone are mutated)."""
    tree = ast.parse((ROOT / module).read_text())
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
               and [ast.unparse(d) for d in node.decorator_list]
               in ([], ["staticmethod"], ["classmethod"])
               for node in ast.walk(tree))


def score(counts: Counter[str]) -> str:
    """Killed share of the mutants that could be killed (equivalents and unchecked excluded)."""
    caught = counts["killed"] + counts["timeout"]
    judged = caught + counts["survived"] + counts["no tests"] + counts["other"]
    return f"{100 * caught / judged:6.1f} %" if judged else "     -"


if __name__ == "__main__":
    sys.exit(main())

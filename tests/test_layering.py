"""Imports point one way: flows -> tasks -> {mova_model, schemas, infra}, infra -> schemas.

The model package stays free of orchestration, storage and database libraries so it can be
used (and tested) as plain PyTorch.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN: dict[str, set[str]] = {
    "mova_model": {"prefect", "ray", "boto3", "botocore", "sqlalchemy", "pydantic", "alembic",
                   "schemas", "tasks", "flows", "infra", "app", "fastapi"},
    "schemas": {"torch", "prefect", "ray", "boto3", "sqlalchemy", "tasks", "flows", "infra",
                "app", "mova_model"},
    "infra": {"prefect", "tasks", "flows", "app"},
    "tasks": {"flows", "app"},
    "flows": {"app"},
}

# The single exception: schemas builds the render request from `mova_model.request`, the one
# definition of a render request. That module (and the error classes it raises) imports only the
# standard library, which test_request_module_imports_only_the_standard_library pins.
ALLOWED: dict[str, set[str]] = {"schemas": {"mova_model.request"}}
REQUEST_CLOSURE = {"mova_model.request", "mova_model.errors", "mova_model.checks"}


def _imported_modules(path: Path) -> set[str]:
    """Full dotted names of the modules a file imports (at any depth in the file), with the
    imported names of `from X import Y` as X.Y."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, modules: set[str]) -> bool:
    """`name` is one of `modules` or something imported from one of them."""
    return any(name == module or name.startswith(module + ".") for module in modules)


def _imported_top_levels(path: Path, allowed: set[str] | None = None) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path)
            if not _within(name, allowed or set())}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_levels(path, ALLOWED.get(package, set())) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("package", ["tasks", "flows", "app"])
def test_only_the_repository_touches_the_orm(package: str) -> None:
    """One door to the data: tasks, flows and the app call infra.repository, never the ORM."""
    offenders = [str(path.relative_to(ROOT)) for path in sorted((ROOT / package).rglob("*.py"))
                 if "infra.db_models" in _imported_modules(path)]
    assert not offenders, f"import infra.db_models: {offenders}"


def test_app_modules_import_each_other_without_a_cycle() -> None:
    modules = {f"app.{p.stem}": p for p in (ROOT / "app").glob("*.py") if p.stem != "__init__"}
    graph = {name: _imported_modules(path) & modules.keys() for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            cycle = trail[trail.index(name):] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_request_module_imports_only_the_standard_library() -> None:
    # mova_model.request may import mova_model.errors (its InvalidRequest); both together must
    # need nothing outside the standard library, or `schemas` would pull torch in through them.
    for module in sorted(REQUEST_CLOSURE):
        path = ROOT / (module.replace(".", "/") + ".py")
        imported = {name for name in _imported_modules(path)
                    if not _within(name, REQUEST_CLOSURE | {"__future__"})}
        outside = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
        assert not outside, f"{module} imports {', '.join(sorted(outside))}"

"""Imports point one way: flows -> tasks -> {mova_model, schemas, infra}, infra -> schemas.

The model package stays free of orchestration, storage and database libraries so it can be
used (and tested) as plain PyTorch.
"""

from __future__ import annotations

import ast
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


def _imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_levels(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not offenders, "\n".join(offenders)


def _imported_modules(path: Path) -> set[str]:
    """Full dotted names of the modules a file imports (at any depth in the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


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

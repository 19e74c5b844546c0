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
REQUEST_CLOSURE = {"mova_model.request", "mova_model.errors"}


def _imported_modules(path: Path) -> set[str]:
    """Full dotted names of absolute imports in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _imported_top_levels(path: Path, allowed: set[str] | None = None) -> set[str]:
    return {name.split(".")[0] for name in _imported_modules(path) - (allowed or set())}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_point_one_way(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _imported_top_levels(path, ALLOWED.get(package, set())) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    assert not offenders, "\n".join(offenders)


def test_request_module_imports_only_the_standard_library() -> None:
    # mova_model.request may import mova_model.errors (its InvalidRequest); both together must
    # need nothing outside the standard library, or `schemas` would pull torch in through them.
    for module in sorted(REQUEST_CLOSURE):
        path = ROOT / (module.replace(".", "/") + ".py")
        imported = _imported_modules(path) - REQUEST_CLOSURE - {"__future__"}
        outside = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
        assert not outside, f"{module} imports {', '.join(sorted(outside))}"

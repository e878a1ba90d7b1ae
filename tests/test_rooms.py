"""The rooms stay apart (docs/architecture.md): pipeline/ and storage/ import neither torch nor
Prefect, model/ imports neither Prefect nor Zarr, and nothing below flows/ imports flows/. Read
from the source (every import, also those deferred inside functions), not from what a test run
happens to load."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: room → top-level packages it must never import
FORBIDDEN = {
    "pipeline": {"torch", "prefect", "flows", "model"},
    "storage": {"torch", "prefect", "flows", "model"},
    "model": {"prefect", "zarr", "flows"},
}


def imported_packages(source: str) -> set[tuple[str, int]]:
    """Top-level package names a module imports, with the line, deferred imports included."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


def violations(room: str, files: list[Path]) -> list[str]:
    return [f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{line} imports {package}"
            for path in files for package, line in sorted(imported_packages(path.read_text()))
            if package in FORBIDDEN[room]]


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_rooms_import_only_what_they_may(room):
    files = sorted((REPO / room).rglob("*.py"))
    assert len(files) > 3
    assert violations(room, files) == []


def test_the_check_sees_deferred_and_dotted_imports(tmp_path):
    """The reader is not blind: an import inside a function, a dotted one and a from-import count."""
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\n\ndef f():\n    import torch.nn\n    from prefect.artifacts import x\n")
    found = imported_packages(bad.read_text())
    assert {("torch", 4), ("prefect", 5), ("numpy", 1)} <= found
    assert [v.split(" imports ")[1] for v in violations("pipeline", [bad])] == ["prefect", "torch"]
    assert violations("model", [bad]) == [f"{bad}:5 imports prefect"]

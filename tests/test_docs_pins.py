"""The versions docs/operations.md says are required and pinned are those pyproject.toml
requires and constraints.txt pins (the docs once named a pin the project no longer used)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_sqlalchemy_requirement_and_pin_in_the_docs_are_the_projects():
    docs = (REPO / "docs" / "operations.md").read_text()
    said = re.search(r"requires `(sqlalchemy[^`]*)` and `constraints.txt`\s+pins ([0-9.]+)", docs)
    assert said, "docs/operations.md no longer says what SQLAlchemy is required and pinned"
    requirement, pin = said.groups()
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert requirement in [d.replace(" ", "") for d in dependencies]
    assert _pins()["sqlalchemy"] == pin
    assert pin.startswith("2.0.")  # the documented reason: 2.1 breaks Prefect 3.8's scheduler

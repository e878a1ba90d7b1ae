"""Shared builders for flow tests: real sample archives and configs pointing at a test cluster."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from flows.config import SeedfieldConfig, load_config
from pipeline.grid import Region

# A North-Atlantic crop keeps flow tests quick while going through the real OISST reader.
TEST_REGION = Region(south=20.0, north=52.0, west=280.0, east=344.0)  # 128 × 256 cells at 0.25°
SMALL_REGION = Region(south=24.0, north=36.0, west=290.0, east=314.0)  # 48 × 96 native cells


def stores(root: Path, name: str) -> dict[str, str]:
    """Config overrides that put a run's three stores under ``root / name``."""
    return {"stores.raw": str(root / name / "raw.zarr"), "stores.seedings": str(root / name / "seedings.zarr"),
            "stores.output": str(root / name / "recon.zarr")}


def flow_config(tmp_path: Path, archive: Path | str, dask_address: str, **overrides) -> SeedfieldConfig:
    return load_config(
        None,
        {
            "archive.source": str(archive),
            "stores.raw": str(tmp_path / "raw.zarr"),
            "stores.seedings": str(tmp_path / "seedings.zarr"),
            "dask.address": dask_address,
            **overrides,
        },
    )


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path (to prove nothing changed on disk)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def days(start: dt.date, n: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


def write_toml(path: Path, overrides: dict[str, Any]) -> Path:
    """A config file from dotted keys (``section.key``), for commands run as subprocesses."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    path.write_text("".join(
        f"[{s}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in kv.items()) + "\n"
        for s, kv in sections.items()
    ))
    return path


def run_cli(*args: str, cwd: object) -> tuple[int, list[str]]:
    """Run the real ``seedfield`` entry point in a process; its exit code and non-empty lines."""
    import subprocess
    import sys
    from pathlib import Path

    from prefect.settings import PREFECT_API_URL

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "60", "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    proc = subprocess.run([sys.executable, "-c", "from flows.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)
    return proc.returncode, [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]

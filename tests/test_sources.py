"""Finding archive files: local directories, globs, patterns, HTTP (a real local server)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipeline.errors import ArchiveError
from pipeline.readers import read_archive_file
from pipeline.sources import ArchiveFile, read_bytes, resolve_archive
from tests.helpers_archive import serve_directory, write_tiny_oisst

D1, D2, D3, D4, D5 = (date(2021, 1, 30), date(2021, 1, 31), date(2021, 2, 1), date(2021, 2, 2),
                      date(2021, 2, 3))
PATTERN = "{date:%Y%m}/oisst-avhrr-v02r01.{date:%Y%m%d}.nc"


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """D1, D2 final; D3 final + preliminary; D4 preliminary only; D5 missing."""
    for day in (D1, D2, D3):
        write_tiny_oisst(tmp_path, day)
    write_tiny_oisst(tmp_path, D3, preliminary=True)
    write_tiny_oisst(tmp_path, D4, preliminary=True)
    (tmp_path / "notes.txt").write_text("not an archive file")
    return tmp_path


def _names(files: list[ArchiveFile]) -> list[tuple[str, tuple[date, ...], bool]]:
    return [(Path(f.url).name, f.steps, f.preliminary) for f in files]


EXPECTED = [
    ("oisst-avhrr-v02r01.20210130.nc", (D1,), False),
    ("oisst-avhrr-v02r01.20210131.nc", (D2,), False),
    ("oisst-avhrr-v02r01.20210201.nc", (D3,), False),
    ("oisst-avhrr-v02r01.20210202_preliminary.nc", (D4,), True),
]


def test_local_directory(archive: Path) -> None:
    index = resolve_archive(str(archive), D1, D5)
    assert _names(index.files) == EXPECTED  # final beats preliminary on D3
    assert index.missing == [D5]
    assert index.duplicates == {}
    assert all(Path(f.url).is_file() for f in index.files)
    narrow = resolve_archive(str(archive), D2, D2)
    assert _names(narrow.files) == [EXPECTED[1]] and narrow.missing == []


def test_local_glob(archive: Path) -> None:
    index = resolve_archive(str(archive / "**" / "*.nc"), D1, D5)
    assert _names(index.files) == EXPECTED
    only_feb = resolve_archive(str(archive / "202102" / "*.nc"), D1, D5)
    assert [f.steps[0] for f in only_feb.files] == [D3, D4]
    assert only_feb.missing == [D1, D2, D5]


def test_local_pattern_with_preliminary_fallback(archive: Path) -> None:
    index = resolve_archive(str(archive / PATTERN), D1, D5)
    assert _names(index.files) == EXPECTED
    assert index.missing == [D5]
    assert resolve_archive(f"file://{archive}/{PATTERN}", D4, D4).files[0].preliminary


def test_duplicates_are_not_chosen(archive: Path) -> None:
    write_tiny_oisst(archive / "mirror", D2, offset=1.0)
    write_tiny_oisst(archive / "mirror", D4, preliminary=True)  # two preliminary files for D4
    index = resolve_archive(str(archive), D1, D5)
    assert sorted(index.duplicates) == [D2, D4]
    assert [Path(u).parent.parent.name for u in index.duplicates[D2]] == [archive.name, "mirror"]
    assert [f.steps[0] for f in index.files] == [D1, D3]
    assert index.missing == [D5]
    # a final file still wins over several preliminary ones
    write_tiny_oisst(archive, D4)
    assert D4 not in resolve_archive(str(archive), D4, D4).duplicates


def test_generic_files_indexed_by_name_or_header(tmp_path: Path) -> None:
    times = pd.date_range("2021-03-01T12:00", periods=3, freq="D")
    multi = xr.Dataset(
        {"sst": (("time", "lat", "lon"), np.full((3, 2, 2), 10.0), {"units": "degC"})},
        coords={"time": times, "lat": [0.0, 1.0], "lon": [0.0, 1.0]},
    )
    multi.to_netcdf(tmp_path / "march_first_days.nc", format="NETCDF3_CLASSIC")
    multi.isel(time=[0]).to_netcdf(tmp_path / "model_sst_20210304.nc4")
    index = resolve_archive(str(tmp_path), date(2021, 3, 2), date(2021, 3, 5))
    assert [(Path(f.url).name, f.steps) for f in index.files] == [
        ("march_first_days.nc", (date(2021, 3, 2), date(2021, 3, 3))),
        ("model_sst_20210304.nc4", (date(2021, 3, 4),)),
    ]
    assert index.missing == [date(2021, 3, 5)]


def test_errors_for_nothing_to_find(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="does not exist") as info:
        resolve_archive(str(tmp_path / "nope"), D1, D2)
    assert str(tmp_path / "nope") in str(info.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveError, match=r"no \.nc, \.nc4, \.cdf or \.netcdf files"):
        resolve_archive(str(tmp_path / "empty"), D1, D2)
    with pytest.raises(ArchiveError, match="glob matches no files"):
        resolve_archive(str(tmp_path / "*.nc"), D1, D2)
    with pytest.raises(ArchiveError, match="no file matches the pattern"):
        resolve_archive(str(tmp_path / PATTERN), D1, D2)
    with pytest.raises(ArchiveError, match="file not found"):
        read_bytes(str(tmp_path / "missing.nc"))
    with pytest.raises(ValueError, match="before start"):
        resolve_archive(str(tmp_path), D2, D1)


# --- HTTP -------------------------------------------------------------------------------


@pytest.fixture
def http_archive(archive: Path) -> Iterator[tuple[str, Path]]:
    with serve_directory(archive) as base:
        yield base, archive


def test_http_pattern_and_read_bytes(http_archive: tuple[str, Path]) -> None:
    base, root = http_archive
    index = resolve_archive(f"{base}/{PATTERN}", D1, D5)
    assert [(f.url.rsplit("/", 1)[-1], f.steps, f.preliminary) for f in index.files] == EXPECTED
    assert index.files[0].url == f"{base}/202101/oisst-avhrr-v02r01.20210130.nc"
    assert index.missing == [D5]
    data = read_bytes(index.files[3].url)
    assert data == (root / "202102" / "oisst-avhrr-v02r01.20210202_preliminary.nc").read_bytes()
    decoded = read_archive_file(data, index.files[3].url, preliminary=True)
    assert decoded.steps[0].step == D4
    with pytest.raises(ArchiveError, match=r"oisst-avhrr-v02r01\.20210203\.nc"):
        read_bytes(f"{base}/202102/oisst-avhrr-v02r01.20210203.nc")


def test_http_directory_listing(http_archive: tuple[str, Path]) -> None:
    base, _ = http_archive
    index = resolve_archive(f"{base}/", D1, D5)
    assert [(f.url.rsplit("/", 1)[-1], f.steps, f.preliminary) for f in index.files] == EXPECTED
    assert index.missing == [D5]
    feb = resolve_archive(f"{base}/202102/", D1, D5)
    assert [f.steps[0] for f in feb.files] == [D3, D4]

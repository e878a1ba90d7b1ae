"""Ingest flow for scattered observations: read the files of ``[observations] source``, validate
every row, and write each step's good rows into the observations store (idempotent, crash-safe).

Per step, in order: the step's arrays are region-written, then its commit marker (which also
counts the refused rows by reason). A step whose stored arrays already equal the new ones (same
sha256) is left untouched, so a re-run changes no byte. A file that cannot be read fails the
steps it may hold (its day, when its name has a date; else every step of the run) and never
overwrites a step already stored; the other files' steps go on.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.config import ConfigError, SeedfieldConfig
from flows.prefect_flow import flow
from flows.progress import RunProgress
from flows.states import finish
from pipeline.errors import ArchiveError
from pipeline.observation_readers import list_observation_files, read_observation_file
from pipeline.observations import (
    REASONS,
    Domain,
    ObservationSettings,
    count_reasons,
    validate_observations,
)
from pipeline.readers import date_from_name
from pipeline.secrets import redact_url
from pipeline.steps import Cadence, Step, step_label
from storage.observations_store import (
    arrays_digest,
    create_observations_store,
    is_observations_store,
    step_arrays,
)
from storage.step_store import StepStore, StoreError

#: Bad rows listed one by one in the JSON report (the counts are always complete).
LISTED_BAD_ROWS = 2000


def observation_domain(settings: ObservationSettings) -> Domain:
    """The grid of ``grid_file`` and the land of ``land_mask_file`` (none: all water)."""
    from pipeline.errors import GridMismatchError
    from pipeline.grid import align_to_grid, read_grid_file, read_land_mask_file

    if not settings.grid_file:
        raise ConfigError("config key 'observations.grid_file': not set; expected a netCDF file whose 1-D "
                          "latitude and longitude are the target grid (the domain of the observations)")
    try:
        grid = read_grid_file(settings.grid_file)
    except ValueError as exc:
        raise ConfigError(f"config key 'observations.grid_file': {exc}") from None
    land = np.zeros(grid.shape, bool)
    if settings.land_mask_file:
        try:
            mask_grid, mask = read_land_mask_file(settings.land_mask_file, settings.land_mask_variable,
                                                  settings.land_mask_means)
            land = align_to_grid(mask, mask_grid, grid, settings.land_mask_file)
        except (ValueError, GridMismatchError) as exc:
            raise ConfigError(f"config key 'observations.land_mask_file': {exc}") from None
    return Domain(lat=np.asarray(grid.lat), lon=np.asarray(grid.lon), land=np.asarray(land, bool))


def open_or_create(config: SeedfieldConfig, domain: Domain, steps: list[Step]) -> StepStore:
    """The observations store, grown to ``steps``; created on the domain's grid when absent."""
    path, opts, settings = config.stores.observations, config.stores.storage_options or None, config.observations
    if StepStore.exists(path, opts):
        store = StepStore(path, opts)
        if not is_observations_store(store):
            raise StoreError(f"{path}: not an observations store (seedfield_store is "
                             f"{store.attrs.get('seedfield_store')!r})")
        if store.cadence != settings.cadence:
            raise ConfigError(f"config key 'observations.step': the store {path} has the step "
                              f"{store.cadence.code!r}, not {settings.cadence.code!r}; use a new store")
        width = int(store.attrs.get("max_per_step", 0))
        if width != settings.max_per_step:
            raise ConfigError(f"config key 'observations.max_per_step': the store {path} holds {width} "
                              f"observations per step, not {settings.max_per_step}; use a new store")
        store.extend(steps)
        return store
    return create_observations_store(
        path, steps, domain.lat, domain.lon, domain.land, settings.max_per_step,
        value_attrs={"long_name": f"observed {settings.variable or settings.columns.get('value', 'value')}",
                     "units": settings.units,
                     **({"standard_name": settings.standard_name} if settings.standard_name else {})},
        attrs={**config.metadata.attrs(), "source_archive": str(settings.source),
               "grid_source": f"{settings.grid_file} (config key observations.grid_file)",
               "land_mask_source": settings.land_mask_file or "none: every cell is water",
               "observation_valid_range": list(settings.valid_range),
               "observation_bad_quality_flags": list(settings.bad_quality_flags)},
        storage_options=opts, cadence=settings.cadence)


def _read_files(settings: ObservationSettings, files: list[str], steps: list[Step], cadence: Cadence,
                progress: RunProgress) -> tuple[pd.DataFrame, dict[str, str], set[Step]]:
    """Every row of the source's files that may hold ``steps`` (a file named by a date is read
    only when that day is within a day of the run), with ``file`` and ``row`` columns; the
    unreadable files with their error; the steps those files may hold."""
    first, last = steps[0], steps[-1]
    lo = (first.date() if isinstance(first, dt.datetime) else first) - dt.timedelta(days=1)
    hi = (last.date() if isinstance(last, dt.datetime) else last) + dt.timedelta(days=1)
    tables, broken, blocked = [], {}, set()
    for url in files:
        named = date_from_name(url)
        if named is not None and not lo <= named <= hi:
            progress.advance()
            continue
        try:
            table = read_observation_file(url, settings)
        except ArchiveError as exc:
            broken[redact_url(url)] = str(exc)
            blocked |= {s for s in steps if named is None or cadence.coerce(s) in set(cadence.steps(named, named))}
        else:
            table["file"] = os.path.basename(redact_url(url))
            table["row"] = np.arange(len(table), dtype="int64")
            tables.append(table)
        progress.advance()
    if not tables:
        from pipeline.observations import empty_observations

        return empty_observations().assign(file=pd.Series([], dtype=object), row=pd.Series([], dtype="int64")), broken, blocked
    return pd.concat(tables, ignore_index=True), broken, blocked


def step_labels(times: pd.Series, cadence: Cadence) -> pd.Series:
    """The label of the step of each time (``""`` for NaT), computed once per distinct time."""
    distinct = pd.unique(times.dropna())
    label = {t: step_label(cadence.step_of(pd.Timestamp(t).to_pydatetime())) for t in distinct}
    return pd.Series([label.get(t, "") for t in times.to_numpy()], index=times.index, dtype=object)


def _write_step(store: StepStore, step: Step, good: pd.DataFrame, rejected: dict[str, int],
                files: list[str], width: int) -> str:
    """Store one step; ``"ok"`` when written, ``"unchanged"`` when the stored step is the same."""
    arrays = step_arrays(good, width)
    digest = arrays_digest(arrays)
    old = store.marker(step)
    payload = {"status": "ok", "n_obs": len(good), "rejected": rejected, "sha256": digest, "files": files}
    if old and old.get("status") == "ok" and old.get("sha256") == digest:
        if store.commit(step, payload):  # same rows, other refused rows or files: only the marker changes
            return "ok"
        return "unchanged"
    store.write_step(step, arrays)
    store.commit(step, payload)
    return "ok"


@flow(name="ingest-observations", flow_run_name="ingest-observations-{start}-{end}")
def ingest_observations_flow(config: SeedfieldConfig, start: dt.datetime | dt.date, end: dt.datetime | dt.date,
                             report: str | None = None, progress_bar: bool = False) -> dict[str, Any]:
    """Validate the observation files and store each step's good rows (see the module's doc).

    Returns ``{"store", "summary": counts per status, "steps": [{step, status, n_obs, rejected}],
    "rejected": totals by reason, "unplaced": bad rows outside the run's steps by reason,
    "bad_rows": the first bad rows with file, row and reason, "files_failed", "failed_days", "ok"}``.
    """
    logger = get_run_logger()
    settings = config.observations
    if not settings.source:
        raise ConfigError("config key 'observations.source': not set; pass --source or set [observations] source")
    cadence = settings.cadence
    steps = cadence.steps(start, end)
    domain = observation_domain(settings)
    files = list_observation_files(str(settings.source), settings.format, settings.storage_options or None)
    store = open_or_create(config, domain, steps)  # only once the source is known to hold files
    with RunProgress(len(files) + len(steps), f"observations {start}…{end}", key="ingest-observations-progress",
                     show_bar=progress_bar) as progress:
        rows, broken, blocked = _read_files(settings, files, steps, cadence, progress)
        table, reasons = validate_observations(rows, settings, domain)
        step_of = step_labels(table["time"], cadence)
        rows_of = step_of.groupby(step_of, sort=False).indices  # label → positions, in the table's order
        ok_reason = (reasons == "").to_numpy()
        wanted = {step_label(s) for s in steps}
        width = settings.max_per_step
        results = []
        for step in steps:
            label = step_label(step)
            here = np.asarray(rows_of.get(label, []), dtype="int64")  # ascending: the canonical order
            good_idx = here[ok_reason[here]]
            if good_idx.size > width:  # keep the first max_per_step in the canonical order
                reasons.iloc[good_idx[width:]] = "over_max_per_step"
                good_idx = good_idx[:width]
            rejected = count_reasons(reasons.iloc[here])
            good = table.iloc[good_idx]
            sources = sorted(set(table["file"].iloc[here]))
            if step in blocked:
                status, why = "failed", "; ".join(broken.values())
                old = store.marker(step)
                if not (old and old.get("status") == "ok"):
                    store.commit(step, {"status": "failed", "error": why, "rejected": rejected})
                else:
                    why += f" (kept the version stored at {old.get('written_at')})"
            elif here.size == 0:
                status, why = "missing", f"no observation in {redact_url(str(settings.source))}"
                old = store.marker(step)
                if not (old and old.get("status") == "ok"):
                    store.commit(step, {"status": "missing", "error": why})
            else:
                status, why = _write_step(store, step, good, rejected, sources, width), ""
            results.append({"step": label, "status": status, "n_obs": int(good_idx.size), "rejected": rejected,
                            "message": why})
            progress.advance()
    bad = reasons != ""
    timeless = reasons.isin(["time_invalid", "time_outside_range"])  # bad rows that belong to no run
    unplaced = count_reasons(reasons[timeless & ~step_of.isin(wanted)])
    totals = count_reasons(reasons[step_of.isin(wanted)])
    listed = table[bad & (step_of.isin(wanted) | timeless)].head(LISTED_BAD_ROWS)
    bad_rows = [{"file": r.file, "row": int(r.row), "time": "" if pd.isna(r.time) else r.time.isoformat(),
                 "platform": r.platform, "reason": reasons[i]} for i, r in listed.iterrows()]
    counts = Counter(r["status"] for r in results)
    summary = {k: counts.get(k, 0) for k in ("ok", "unchanged", "failed", "missing")}
    for why in broken.values():
        logger.warning("%s", why)
    logger.info("observations %s…%s into %s: %s; %d good rows; refused %s; outside the run's steps %s",
                start, end, store.path, summary, sum(r["n_obs"] for r in results), totals, unplaced)
    _artifacts(results, totals, unplaced, summary, start, end, config.stores.observations)
    if summary["ok"] or summary["failed"] or summary["missing"]:
        store.record_run(f"ingest-observations {start}..{end}: "
                         + ", ".join(f"{v} {k}" for k, v in summary.items() if v))
    result = {
        "store": config.stores.observations, "summary": summary, "steps": results, "rejected": totals,
        "unplaced": unplaced, "bad_rows": bad_rows, "files_failed": broken,
        "failed_days": [r["step"] for r in results if r["status"] in ("failed", "missing")],
        "ok": not any(r["status"] in ("failed", "missing") for r in results),
    }
    if report:
        _write_report(report, result, settings, start, end)
    return finish(result)


def _artifacts(results: list[dict[str, Any]], totals: dict[str, int], unplaced: dict[str, int],
               summary: dict[str, int], start: Any, end: Any, store: str) -> None:
    """A table of refused rows per step and reason, and a markdown summary, in the Prefect UI."""
    used = [r for r in REASONS if any(r in row["rejected"] for row in results)]
    rows = [{"step": r["step"], "status": r["status"], "good": r["n_obs"],
             **{reason: r["rejected"].get(reason, 0) for reason in used}} for r in results[:1000]]
    create_table_artifact(rows, key="ingest-observations-steps",
                          description=f"observations {start}…{end}: good rows and refused rows by reason, per step")
    text = (f"## Observations {start} … {end}\n\nStore: `{redact_url(store)}`\n\n| status | steps |\n|---|---|\n"
            + "".join(f"| {k} | {v} |\n" for k, v in summary.items())
            + "\n| refused because | rows |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in totals.items())
            + ("\nRows outside the run's steps, refused: " + ", ".join(f"{k} {v}" for k, v in unplaced.items())
               if unplaced else ""))
    create_markdown_artifact(text, key="ingest-observations-summary")


def _write_report(path: str, result: dict[str, Any], settings: ObservationSettings, start: Any, end: Any) -> None:
    import json
    from pathlib import Path

    from pipeline.secrets import redact_text

    body = {"flow": "ingest-observations",
            "finished_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            "source": redact_url(str(settings.source)), "start": str(start), "end": str(end), **result}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(redact_text(json.dumps(body, indent=1, default=str)))


__all__ = ["ingest_observations_flow", "observation_domain"]

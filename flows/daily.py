"""Daily flow: one new day through ingest → prepare → infer, preliminary days refreshed, QA'd.

Run by the ``daily`` deployment every morning (flows/deployments.py), or by hand with
``seedfield daily [--date DAY]``. Without a day, the day is the UTC date of the flow run's
*scheduled* start time minus ``lag_days`` (so a late or re-run slot still processes its own day).

Steps (each a subflow, so the UI shows them as nested runs):

1. ingest the day;
2. re-ingest the days of the last ``preliminary_window`` days stored from a ``_preliminary``
   file: ingest is idempotent and a final file replaces a preliminary day when it appears;
3. prepare the day and every re-ingested day whose raw bytes changed;
4. infer them with the current model (or ``model_id``);
5. QA: a day whose re-binned RMSE exceeds ``qa_threshold`` is flagged (log warning, artifacts);
6. artifacts: ``daily-summary`` (markdown), ``daily-qa`` (table, one row per day processed),
   ``daily-quicklook`` (markdown with the day's map embedded as a base64 PNG data: URI, so the
   UI shows it with no file server).

The days written are locked in the three stores for the run (flows/locks.py), so a backfill
over the same days cannot run at the same time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run as runtime_flow_run

from flows.config import ConfigError, SeedfieldConfig
from flows.dask_runtime import shared_dask
from flows.infer import infer_flow
from flows.ingest import ingest_flow, known_cadence
from flows.locks import pipeline_locks
from flows.prefect_flow import flow
from flows.prepare import prepare_flow
from flows.reports import StepOutcome, summarise
from flows.states import finish, run_flow
from pipeline.quicklook import data_uri, quicklook_png
from pipeline.steps import parse_step, step_label
from storage.model_registry import ModelRegistry
from storage.step_store import StepStore

DONE = ("ok", "unchanged")


def resolve_day(day: dt.date | dt.datetime | str | None, lag_days: int = 1,
                scheduled: dt.datetime | None = None) -> dt.date:
    """The day to process: ``day`` if given, else the UTC date of the scheduled start − lag."""
    if day is not None:
        if isinstance(day, dt.datetime):
            return day.date()
        if isinstance(day, dt.date):
            return day
        return parse_step(str(day))
    when = scheduled if scheduled is not None else runtime_flow_run.scheduled_start_time
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).date() - dt.timedelta(days=int(lag_days))


def daily_run_name() -> str:
    """``daily-YYYY-MM-DD`` for the day the run will process (called by Prefect before the body)."""
    params = runtime_flow_run.parameters
    return f"daily-{resolve_day(params.get('day'), int(params.get('lag_days', 1)))}"


def preliminary_days(raw: StepStore, day: dt.date, window: int) -> list[dt.date]:
    """Steps of the days ``[day − window, day − 1]`` stored (ok) from a preliminary file."""
    if window < 1 or not StepStore.exists(raw.path, raw.storage_options):
        return []
    found = []
    for d in raw.steps_between(day - dt.timedelta(days=window), day - dt.timedelta(days=1)):
        m = raw.marker(d)
        if m and m.get("status") == "ok" and m.get("preliminary"):
            found.append(d)
    return found


def _qa_rows(rows: list[dict[str, Any]], raw: StepStore, qa_threshold: float | None) -> list[dict[str, Any]]:
    table = []
    for r in rows:
        m = raw.marker(parse_step(r["day"])) or {}
        rmse = r.get("qa_rebin_rmse")
        if rmse is None:
            qa = "—"
        elif qa_threshold is not None and rmse > qa_threshold:
            qa = f"ABOVE {qa_threshold:g} °C"
        else:
            qa = "ok"
        table.append({
            "day": r["day"], "status": r["status"], "qa_rebin_rmse": rmse,
            "qa_rebin_bias": r.get("qa_rebin_bias"), "qa": qa,
            # scores at withheld real sensors (no truth needed): the model's and cubic's
            "qa_cv_model_rmse": r.get("qa_cv_model_rmse"), "qa_cv_cubic_rmse": r.get("qa_cv_cubic_rmse"),
            # from observations: whole platforms withheld, linear and kriging scored too
            **({k: r.get(k) for k in ("qa_cv_linear_rmse", "qa_cv_kriging_rmse", "qa_cv_n", "qa_cv_kind")}
               if r.get("qa_cv_kind") == "platform" else {}),
            "source": str(m.get("source", "")).rsplit("/", 1)[-1]
            or ", ".join(str(f).rsplit("/", 1)[-1] for f in m.get("files", [])),
            "preliminary": bool(m.get("preliminary", False)), "message": r.get("message", ""),
        })
    return table


def _quicklook(config: SeedfieldConfig, day: dt.date, model_id: str) -> str | None:
    out = StepStore(config.stores.output, config.stores.storage_options or None)
    marker = out.marker(day)
    if not marker or marker.get("status") != "ok":
        return None
    sst = out.read_step(day, ["sst"])["sst"]
    land = out.read_static("land_mask").astype(bool)
    png = quicklook_png(sst, out.read_static("lat"), out.read_static("lon"), land,
                        f"reconstructed SST {day} ({model_id})")
    return (f"## Quicklook {day}\n\n![reconstructed SST {day}]({data_uri(png)})\n\n"
            f"Model `{model_id}`, re-binned QA RMSE {marker.get('qa_rebin_rmse')} °C, "
            f"store `{out.path}`. PNG {len(png) / 1024:.0f} KiB, embedded as a data: URI.\n")


def run_daily(
    config: SeedfieldConfig, day: dt.date, model_id: str | None = None, qa_threshold: float | None = None,
    preliminary_window: int = 21,
) -> dict[str, Any]:
    """The body of the daily flow (also used by the deployment's entry flow); needs a flow run."""
    logger = get_run_logger()
    if config.observations.source:  # scattered observations in place of (or beside) a gridded archive
        from flows.daily_observations import daily_observation_steps

        model_id = ModelRegistry(config.stores.registry, config.stores.storage_options).resolve(model_id)
        targets, rows, source = daily_observation_steps(config, day, model_id, qa_threshold)
        return report_daily(config, day, model_id, qa_threshold, targets, rows, [], source)
    if not config.archive.source:
        raise ConfigError("config key 'archive.source' (or 'observations.source'): not set; the daily run needs one")
    if preliminary_window < 0:
        raise ConfigError(f"preliminary_window must be ≥ 0, got {preliminary_window}")
    registry = ModelRegistry(config.stores.registry, config.stores.storage_options)
    model_id = registry.resolve(model_id)
    opts = config.stores.storage_options or None
    raw = StepStore(config.stores.raw, opts)
    cadence = known_cadence(config)
    first = day - dt.timedelta(days=preliminary_window)
    purpose = f"daily {day} (flow run {runtime_flow_run.id or 'local'})"
    # Its subflows mostly submit a job or two (the day, a refreshed preliminary day): no shared
    # cluster; each runs its jobs in this process or starts a cluster when it has more.
    with pipeline_locks(config, first, day, purpose) as held, shared_dask(config, jobs=1) as cfg:
        for lock in held:
            for who in lock.took_over:
                logger.warning("took over a stale lock of %s: %s", lock.store, who)
        run_flow(ingest_flow, cfg, day, day)
        # the day's steps: the day itself, its hours on a sub-daily axis, its month on a monthly one
        steps = raw.steps_between(day, day)
        targets = [s for s in steps if (raw.marker(s) or {}).get("status") == "ok"]
        prelim = [d for d in preliminary_days(raw, day, preliminary_window) if d not in steps]
        reingested: list[dt.date] = []
        if prelim:
            before = {d: raw.marker(d) for d in prelim}
            logger.info("re-ingesting %d preliminary day(s) %s…%s", len(prelim), prelim[0], prelim[-1])
            run_flow(ingest_flow, cfg, prelim[0], prelim[-1])
            for d in prelim:
                after = raw.marker(d) or {}
                if after.get("status") == "ok" and after.get("sha256") != (before[d] or {}).get("sha256"):
                    reingested.append(d)
                    logger.info("%s: replaced by %s", d, str(after.get("source")).rsplit("/", 1)[-1])
            targets = sorted({*targets, *reingested})
        rows: list[dict[str, Any]] = []
        if targets:
            lo, hi = targets[0], targets[-1]
            run_flow(prepare_flow, cfg, lo, hi)
            inferred = run_flow(infer_flow, cfg, lo, hi, model_id, qa_threshold=qa_threshold, cross_validate=True)
            wanted = {step_label(d) for d in targets}
            rows = [r for r in inferred["days"] if r["day"] in wanted]
    for step in raw.steps_between(day, day) if StepStore.exists(raw.path, opts) else cadence.steps(day, day):
        if step not in targets:
            m = raw.marker(step) if StepStore.exists(raw.path, opts) else None
            rows.insert(0, {"day": step_label(step), "status": (m or {}).get("status", "missing"),
                            "message": (m or {}).get("error") or "the step could not be ingested"})
    return report_daily(config, day, model_id, qa_threshold, targets, rows, reingested, raw)


def report_daily(config: SeedfieldConfig, day: dt.date, model_id: str, qa_threshold: float | None,
                 targets: list[dt.date], rows: list[dict[str, Any]], reingested: list[dt.date],
                 source: StepStore) -> dict[str, Any]:
    """QA, artifacts and the result of a daily run; ``source`` is the store the steps came from
    (raw, or observations), whose markers name the files."""
    logger = get_run_logger()
    rows.sort(key=lambda r: r["day"])
    flagged = [r["day"] for r in rows if qa_threshold is not None and (r.get("qa_rebin_rmse") or 0) > qa_threshold]
    for d in flagged:
        logger.warning("QA: %s re-binned RMSE above the threshold %s °C", d, qa_threshold)
    failed = [r["day"] for r in rows if r["status"] not in DONE]
    for r in rows:
        if r["status"] not in DONE:
            logger.warning("%s %s: %s", r["day"], r["status"], r.get("message", ""))
    counts = summarise(StepOutcome(r["day"], r["status"]) for r in rows)
    table = _qa_rows(rows, source, qa_threshold)
    create_table_artifact(table, key="daily-qa", description=f"daily run {day}: per-day QA, model {model_id}")
    ql = _quicklook(config, targets[-1], model_id) if targets else None
    if ql:
        create_markdown_artifact(ql, key="daily-quicklook", description=f"reconstructed SST {day}")
    create_markdown_artifact(
        f"## Daily run {day}\n\nModel `{model_id}` → `{config.stores.output}`\n\n"
        f"Re-ingested preliminary days replaced by final files: "
        f"{', '.join(str(d) for d in reingested) or 'none'}\n\n"
        "| status | days |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in counts.items() if v)
        + (f"\n**QA**: {len(flagged)} day(s) above {qa_threshold} °C: {', '.join(flagged)}\n" if flagged else "")
        + (f"\n**Failed or missing**: {', '.join(failed)}\n" if failed else ""),
        key="daily-summary",
    )
    logger.info("daily %s with %s: %s; re-ingested %s; QA flagged %s", day, model_id, counts,
                [str(d) for d in reingested], flagged)
    return {"day": step_label(day), "store": config.stores.output, "model_id": model_id, "summary": counts,
            "days": rows, "reingested": [step_label(d) for d in reingested], "qa_flagged": flagged,
            "failed_days": failed, "ok": not failed}


@flow(name="daily", flow_run_name=daily_run_name)
def daily_flow(
    config: SeedfieldConfig,
    day: dt.date | None = None,
    model_id: str | None = None,
    qa_threshold: float | None = None,
    lag_days: int = 1,
    preliminary_window: int = 21,
) -> dict[str, Any]:
    """Process one day (default: scheduled date − ``lag_days``) and refresh preliminary days."""
    return finish(run_daily(config, resolve_day(day, lag_days), model_id, qa_threshold, preliminary_window))

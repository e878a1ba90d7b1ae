"""Inference flow: the published generator over any date range, back into a Zarr store on the
native grid, land-masked, with a QA that needs no truth, one commit marker per day."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import functools
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from flows.config import InferSettings, SeedfieldConfig
from flows.prefect_flow import flow
from flows.prepare import chunks
from flows.progress import RunProgress
from flows.reports import StepOutcome, any_failed, summarise
from flows.states import finish
from flows.windowed import run_windowed
from pipeline.binning import block_mean
from pipeline.regrid import NativeRegridder
from pipeline.steps import step_label
from storage.cf import code_version
from storage.model_registry import ModelRegistry
from storage.output_store import create_output_store
from storage.seedings_store import has_platforms, seeding_params
from storage.step_store import StepStore, StoreError


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@functools.lru_cache(maxsize=2)
def load_engine(checkpoint: str, mtime: float, settings_json: str) -> tuple[Any, dict[str, Any]]:
    """The inference engine for a checkpoint, built once per process (keyed by file and mtime)."""
    from model.checkpoint import load_checkpoint
    from model.inference import InferenceEngine
    from model.sensornet_fit import is_sensornet
    from model.sensornet_fit import load_engine as load_sensornet_engine

    settings = InferSettings.model_validate_json(settings_json)
    device = resolve_device(settings.device)
    if is_sensornet(checkpoint):  # reads the sensors on the native grid, not LR bin means
        engine = load_sensornet_engine(checkpoint, device=str(device), batch_size=settings.batch_size)
        return engine, {"architecture": "sensornet", **engine.cfg.model_dump(mode="json")}
    ckpt = load_checkpoint(checkpoint, map_location=device)
    engine = InferenceEngine(
        ckpt.generator, ckpt.norm, device=device, batch_size=settings.batch_size, tile=settings.tile,
        overlap=settings.overlap, time_features=bool(ckpt.config.get("time_features", False)),
        self_ensemble=settings.self_ensemble,
    )
    return engine, ckpt.config


def engine_for(registry: ModelRegistry, model_id: str, settings: InferSettings) -> tuple[Any, dict[str, Any]]:
    path = registry.checkpoint(model_id)
    return load_engine(str(path), path.stat().st_mtime, settings.model_dump_json())


def read_lr(seedings: StepStore, days: list[dt.date]) -> tuple[np.ndarray, np.ndarray]:
    """(T, h, w) LR bin means and counts of ``days``."""
    rows = [seedings.read_step(d, ["lr_mean", "lr_count"]) for d in days]
    return np.stack([r["lr_mean"] for r in rows]), np.stack([r["lr_count"] for r in rows])


#: Every forward pass of this process runs on this one thread: the model is shared by the task
#: threads, and a global field's activations (~0.5 GiB at batch 8) are then allocated from one
#: malloc arena and reused, instead of one arena per task thread (RSS grew with the day count).
_FORWARD = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="seedfield-forward")


def predict_days(
    engine: Any, seedings: StepStore, days: list[dt.date], lr: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """(T, H, W) physical-unit HR predictions for ``days`` from the stored LR inputs; for a
    SensorNet, (T, ny, nx) native fields from the steps' (and their neighbours') sensors."""
    if getattr(engine, "needs_sensors", False):
        from flows.sensornet import predict_steps

        return _FORWARD.submit(predict_steps, engine, seedings, days).result()
    lr_mean, lr_count = lr if lr is not None else read_lr(seedings, days)
    doy = np.array([d.timetuple().tm_yday for d in days])
    return _FORWARD.submit(engine.predict, lr_mean, lr_count, day_of_year=doy).result()


@functools.lru_cache(maxsize=4)
def regridder(path: str, created: str, hr_cell: int) -> NativeRegridder:
    """The store's HR → native regridder, built once per process and store."""
    return NativeRegridder(StepStore(path).read_static("land_mask").astype(bool), hr_cell)


def rebin_qa(native: np.ndarray, lr_mean: np.ndarray, lr_count: np.ndarray, bin_size: int) -> tuple[float, float]:
    """RMSE and bias of the prediction's LR-bin means against the sensor bin means (seeded bins)."""
    rebinned = block_mean(native, bin_size)
    seeded = (lr_count > 0) & np.isfinite(rebinned) & np.isfinite(lr_mean)
    if not seeded.any():
        return float("nan"), float("nan")
    diff = (rebinned - lr_mean)[seeded].astype("float64")
    return float(np.sqrt(np.mean(diff**2))), float(np.mean(diff))


def written_by(marker: dict[str, Any] | None, model_id: str, model_sha: str) -> bool:
    """True when a reconstruction's commit ``marker`` is an ``ok`` written by this very model:
    its id and its checkpoint's SHA-256 (a model retrained under the same id is another model)."""
    return bool(marker) and marker.get("status") == "ok" and marker.get("model_id") == model_id \
        and marker.get("model_sha256") == model_sha


def open_or_create_output(config: SeedfieldConfig, seedings: StepStore, days: list[dt.date], model_id: str) -> StepStore:
    path, opts = config.stores.output, config.stores.storage_options or None
    if StepStore.exists(path, opts):
        store = StepStore(path, opts)
        store.extend(days)
        store.update_attrs(model_id=model_id)
        return store
    params = seeding_params(seedings)
    provenance = {
        **config.metadata.attrs(),
        "model_id": model_id, "seedings_store": seedings.path, "raw_store": config.stores.raw,
        **{f"seeding_{k}": v for k, v in params.items()},
        "history": f"seedfield {code_version()} infer",
        "comment": "the model's reconstruction on the native grid (a zoo generator's HR output "
                   "regridded bilinearly; a SensorNet's directly), land masked",
    }
    return create_output_store(
        path, days, seedings.read_static("lat"), seedings.read_static("lon"),
        seedings.read_static("land_mask"), provenance, opts, seedings.cadence,
    )


@task(name="infer-days", task_run_name="{label}", cache_policy=NONE, retries=1, retry_delay_seconds=5)
def infer_days_task(label: str, config: SeedfieldConfig, model_id: str, days: list[dt.date], force: bool,
                    cross_validate: bool = False) -> list[dict[str, Any]]:
    """Predict, regrid, mask, QA and write a chunk of days; one result per day. With
    ``cross_validate``, also score the model and cubic at withheld real sensors (no truth needed)."""
    opts = config.stores.storage_options or None
    seedings = StepStore(config.stores.seedings, opts)
    out = StepStore(config.stores.output, opts)
    model_sha = ModelRegistry(config.stores.registry, config.stores.storage_options).fingerprint(model_id)
    todo = []
    results = []
    for day in days:
        old = out.marker(day)
        src = seedings.marker(day)
        if not src or src.get("status") != "ok":
            results.append({"day": step_label(day), "status": "missing", "message": "no prepared seedings for this day"})
        elif not force and written_by(old, model_id, model_sha) and old.get("seedings") == src.get("raw_sha256"):
            results.append({"day": step_label(day), "status": "unchanged", "qa_rebin_rmse": old.get("qa_rebin_rmse")})
        else:
            todo.append(day)
    if not todo:
        return results
    engine, _ = engine_for(ModelRegistry(config.stores.registry, config.stores.storage_options), model_id, config.infer)
    params = seeding_params(seedings)
    bin_size, hr_cell = int(params["bin_size"]), int(params["bin_size"]) // int(params["upsampling"])
    to_native = regridder(seedings.path, str(seedings.attrs.get("date_created", "")), hr_cell).to_native
    lr_mean, lr_count = read_lr(seedings, todo)
    hr = predict_days(engine, seedings, todo, (lr_mean, lr_count))
    cv: dict[dt.date, dict[str, float]] = {}
    if cross_validate:
        if has_platforms(seedings):  # real observations: whole platforms withheld
            from flows.platform_cv import platform_qa

            cv = _FORWARD.submit(platform_qa, config, engine, seedings, todo, model_id).result()
        else:
            from flows.sensornet import withheld_scores

            cv = _FORWARD.submit(withheld_scores, engine, seedings, todo, config.infer.cv_fraction).result()
    native_shape = (lr_mean.shape[1] * bin_size, lr_mean.shape[2] * bin_size)
    for i, (day, field) in enumerate(zip(todo, hr, strict=True)):
        # a SensorNet field is already native and land-masked; an HR field is regridded
        native = field if field.shape == native_shape and hr_cell > 1 else to_native(field)
        qa_rmse, qa_bias = rebin_qa(native, lr_mean[i], lr_count[i], bin_size)
        out.write_step(day, {"sst": native, "qa_rebin_rmse": np.float32(qa_rmse), "qa_rebin_bias": np.float32(qa_bias)})
        qa = {"qa_rebin_rmse": round(qa_rmse, 5), "qa_rebin_bias": round(qa_bias, 5),
              **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in cv.get(day, {}).items()}}
        out.commit(day, {"status": "ok", "model_id": model_id, "model_sha256": model_sha, "seedings": seedings.marker(day).get("raw_sha256"), **qa})
        results.append({"day": step_label(day), "status": "ok", **qa})
    return results


@flow(name="infer", flow_run_name="infer-{start}-{end}")
def infer_flow(
    config: SeedfieldConfig, start: dt.datetime | dt.date, end: dt.datetime | dt.date, model_id: str | None = None,
    force: bool = False, progress_bar: bool = False, qa_threshold: float | None = None,
    cross_validate: bool = False,
) -> dict[str, Any]:
    """Reconstruct every prepared day of [start, end] with ``model_id`` (default: current)."""
    logger = get_run_logger()
    registry = ModelRegistry(config.stores.registry, config.stores.storage_options)
    model_id = registry.resolve(model_id)
    seedings = StepStore(config.stores.seedings, config.stores.storage_options or None)
    if not StepStore.exists(seedings.path, seedings.storage_options):
        raise StoreError(f"{seedings.path}: no seedings store; run `seedfield prepare` first")
    days = seedings.steps_between(start, end)
    out = open_or_create_output(config, seedings, days, model_id)
    rows: list[dict[str, Any]] = []
    groups = chunks(days, config.infer.days_per_task)
    with RunProgress(len(days), f"infer {start}…{end}", "infer-progress", progress_bar) as progress:
        for group, result in run_windowed(
            lambda g: infer_days_task.submit(
                f"infer-{step_label(g[0])}" if len(g) == 1 else f"infer-{step_label(g[0])}-to-{step_label(g[-1])}", config, model_id, g, force, cross_validate),
            groups, window=2,
        ):
            if isinstance(result, Exception):
                result = [{"day": step_label(d), "status": "failed", "message": f"{type(result).__name__}: {result}"} for d in group]
            rows.extend(result)
            progress.advance(len(group))
    rows.sort(key=lambda r: r["day"])
    outcomes = [StepOutcome(r["day"], r["status"], out.path, r.get("message", "")) for r in rows]
    flagged = [r for r in rows if qa_threshold is not None and (r.get("qa_rebin_rmse") or 0) > qa_threshold]
    for r in rows:
        if r["status"] in ("failed", "missing"):
            logger.warning("%s %s: %s", r["day"], r["status"], r.get("message", ""))
    for r in flagged:
        logger.warning("%s: QA re-binned RMSE %.3f °C above the threshold %.3f", r["day"], r["qa_rebin_rmse"], qa_threshold)
    counts = summarise(outcomes)
    try:  # history and time coverage, once per run that changed or tried a step
        if counts.get("ok") or counts.get("failed") or counts.get("missing"):
            out.record_run(f"infer {start}..{end} with model {model_id}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    except OSError as exc:  # a full disk or a read-only store: the run's outcome is still reported
        logger.warning("%s: history not recorded: %s", out.path, exc)
    create_table_artifact(rows[:1000], key="infer-days", description=f"per-day QA, model {model_id}")
    create_markdown_artifact(
        f"## Inference {start} … {end}\n\nModel `{model_id}` → `{out.path}`\n\n| status | days |\n|---|---|\n"
        + "".join(f"| {k} | {v} |\n" for k, v in counts.items())
        + (f"\n{len(flagged)} day(s) above the QA threshold {qa_threshold} °C\n" if qa_threshold else ""),
        key="infer-summary",
    )
    logger.info("infer %s…%s with %s into %s: %s", start, end, model_id, out.path, counts)
    return finish({"store": out.path, "model_id": model_id, "summary": counts, "days": rows,
            "failed_days": [r["day"] for r in rows if r["status"] in ("failed", "missing")],
            "qa_flagged": [r["day"] for r in flagged], "ok": not any_failed(outcomes)})



"""Compare flow: every architecture of the zoo trained on the same seedings with the same budget,
scored on the same held-back days beside the classical baselines, in one table.

The period [start, end] of prepared days is cut chronologically: the last ``test_fraction``
is held back for the scores, the rest is split as ``seedfield train`` does (the last
``val_fraction`` validates, for early stopping; ``compare.val_fraction`` or
``split.val_fraction``). One set of normalisation statistics serves
every architecture. Each architecture trains with its paper's size and recipe
(``compare.paper_sizes``) and the shared budget of ``[compare]``: the same epochs, batches per
epoch, batch size, learning rates and pixel-only pretraining epochs. Every trained model is
published to the registry (not made current) so it can run through ``seedfield infer``.

An architecture that fails is reported in its row with the error; the others go on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.config import SeedfieldConfig
from flows.dask_runtime import dask_client
from flows.evaluate import METRICS, fit_period_baselines, period_range
from flows.evaluate_job import score_days
from flows.infer import engine_for, predict_days, read_lr, resolve_device
from flows.prefect_flow import flow
from flows.prepare import stream_norm_stats
from flows.progress import RunProgress
from flows.sensornet import train_sensornet_task
from flows.train import split_days, train_task, training_slot
from pipeline.plots import loss_curve_png
from pipeline.secrets import redact_url
from pipeline.steps import step_label
from storage.cf import code_version
from storage.fs import write_bytes_atomic
from storage.model_registry import ModelRegistry
from storage.seedings_store import seeding_params
from storage.step_store import StepStore, StoreError

BASELINES = ("cubic", "linear", "nearest", "kriging", "cubic_anomaly", "dineof", "bicubic_lr", "lr_bins")
TABLE_BEGIN = "<!-- seedfield compare: begin -->"
TABLE_END = "<!-- seedfield compare: end -->"
#: The columns of the table, in order: (key, header, format).
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("method", "method", "{}"),
    ("parameters", "parameters", "{:,}"),
    ("seconds_per_epoch", "epoch s (train+val)", "{:.1f}"),
    ("infer_ms_per_field", "infer ms/field", "{:.1f}"),
    ("rmse", "RMSE °C", "{:.4f}"),
    ("psnr", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("hfen", "HFEN", "{:.4f}"),
)


def split_three(days: list[dt.date], test_fraction: float, val_fraction: float) -> tuple[list[dt.date], list[dt.date], list[dt.date]]:
    """Chronological train / validation / test split (at least one day in each)."""
    if len(days) < 3:
        raise StoreError(f"need at least 3 prepared days to compare (train, validate, test); found {len(days)}")
    n_test = min(max(1, round(len(days) * test_fraction)), len(days) - 2)
    train, val = split_days(days[:-n_test], val_fraction)
    return train, val, days[-n_test:]


def architecture_config(config: SeedfieldConfig, name: str) -> SeedfieldConfig:
    """``config`` with the training settings of ``name`` under the comparison's shared budget."""
    c = config.compare
    update: dict[str, Any] = {
        "architecture": name, "epochs": c.epochs, "pretrain_epochs": c.pretrain_epochs,
        "max_batches_per_epoch": c.max_batches_per_epoch, "checkpoint_every": 1,
    }
    if c.paper_sizes:  # the paper's width, depth and loss weights
        update.update(n_features=None, n_res_blocks=None, res_scale=None, content_loss=None,
                      adversarial_weight=None, content_weight=None, interpolation_alpha=None)
    train = config.train.model_validate({**config.train.model_dump(), **update})
    return config.model_copy(update={"train": train})


def _fmt(row: dict[str, Any], key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return fmt.format(value)


def _cell(text: str, limit: int = 80) -> str:
    """One line, no column separators: safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")[:limit]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a Markdown table (models first, then the baselines)."""
    head = "| " + " | ".join(h for _, h, _ in COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    lines = []
    for row in rows:
        if row.get("error"):
            lines.append(f"| {row['method']} | failed: {_cell(row['error'])} |" + " |" * (len(COLUMNS) - 2) + "\n")
        else:
            lines.append("| " + " | ".join(_fmt(row, k, f) for k, _, f in COLUMNS) + " |\n")
    return head + "".join(lines)


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    """Put the table between the generated-section markers of ``path`` (created if missing);
    the prose around the markers is kept."""
    b = report["budget"]
    section = (
        f"{TABLE_BEGIN}\n"
        f"Generated by `seedfield compare` ({report['created']}, seedfield {report['seedfield_version']}) on "
        f"`{report['seedings_store']}`: trained on {report['n_train_days']} days "
        f"{report['train_period'][0]} … {report['train_period'][1]}, validated on {report['n_val_days']} "
        f"({report['val_period'][0]} … {report['val_period'][1]}), scored on {report['n_test_days']} held-back "
        f"days {report['test_period'][0]} … {report['test_period'][1]}. Budget for every architecture: "
        f"{b['epochs']} epochs ({b['pretrain_epochs']} pixel-loss only) × {b['max_batches_per_epoch'] or 'all'} "
        f"batches of {b['batch_size']}, Adam lr {b['lr_generator']:g} (G) / {b['lr_discriminator']:g} (D), "
        f"device {b['device']}. PSNR/SSIM data range {report['data_range']:.2f} °C. Inference ms/field: "
        f"the whole domain, batch {b['infer_batch_size']}, on {b['infer_device']}.\n\n"
        + markdown_table(report["rows"]) + f"{TABLE_END}\n"
    )
    text = path.read_text() if path.exists() else "# Model zoo\n\n"
    if TABLE_BEGIN in text and TABLE_END in text:
        before, rest = text.split(TABLE_BEGIN, 1)
        after = rest.split(TABLE_END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    write_bytes_atomic(str(path), text.encode())


def time_inference(engine: Any, seedings: StepStore, days: list[dt.date]) -> tuple[np.ndarray, float]:
    """HR predictions of ``days`` and the wall time per field in ms (after one warm-up day)."""
    lr = read_lr(seedings, days)
    predict_days(engine, seedings, days[:1], (lr[0][:1], lr[1][:1]))
    t0 = time.perf_counter()
    hr = predict_days(engine, seedings, days, lr)
    return hr, 1e3 * (time.perf_counter() - t0) / len(days)


def mean_metrics(rows: list[dict[str, Any]], method: str) -> dict[str, float]:
    return {k: float(np.mean([r["metrics"][method][k] for r in rows])) for k in METRICS}


@flow(name="compare", flow_run_name="compare-{start}-{end}")
def compare_flow(
    config: SeedfieldConfig, start: dt.datetime | dt.date, end: dt.datetime | dt.date, json_path: str, markdown_path: str | None = None,
    progress_bar: bool = False,
) -> dict[str, Any]:
    """Train, time and score every ``config.compare.architectures``; write JSON (and Markdown)."""
    logger = get_run_logger()
    opts = config.stores.storage_options or None
    if not StepStore.exists(config.stores.seedings, opts):
        raise StoreError(f"{config.stores.seedings}: no seedings store; run `seedfield prepare` first")
    seedings = StepStore(config.stores.seedings, opts)
    raw_path = config.stores.raw
    if not StepStore.exists(raw_path, opts) and seedings.attrs.get("raw_store"):
        raw_path = str(seedings.attrs["raw_store"])  # the raw store these seedings came from
    if not StepStore.exists(raw_path, opts):
        raise StoreError(f"{raw_path}: no raw store (the truth to score against); set stores.raw")
    raw = StepStore(raw_path, opts)
    days = seedings.committed_between(start, end)
    train_days, val_days, test_days = split_three(
        days, config.compare.test_fraction, config.compare.val_fraction or config.split.val_fraction)
    logger.info("compare: %d training days %s…%s, %d validation, %d test days %s…%s", len(train_days),
                train_days[0], train_days[-1], len(val_days), len(test_days), test_days[0], test_days[-1])
    with dask_client(config.dask):
        norm = stream_norm_stats(config, seedings, train_days, seasonal=config.train.seasonal_norm)
    upsampling = int(seeding_params(seedings)["upsampling"])
    land = seedings.read_static("land_mask").astype(bool)
    data_range = config.evaluate.data_range or period_range(raw, test_days, land.shape, land)
    registry = ModelRegistry(config.stores.registry, config.stores.storage_options)
    infer_settings = config.infer.model_copy(update={"tile": None})
    rows: list[dict[str, Any]] = []
    names = list(dict.fromkeys(config.compare.architectures))
    with RunProgress(len(names) + 1, f"compare {len(names)} architectures", "compare-progress", progress_bar) as progress:
        for name in names:
            row: dict[str, Any] = {"method": name, "kind": "model"}
            try:
                cfg = architecture_config(config, name)
                key = compare_key(cfg, name, seedings.path, train_days, val_days)
                with training_slot(config, f"compare {name}"):
                    row.update(_train_and_score(
                        cfg, name, f"zoo-{name}-{key}", key, registry, train_days,
                        val_days, test_days, norm, upsampling, seedings, raw, data_range, infer_settings, logger,
                    ))
            except Exception as exc:
                logger.error("compare: %s failed: %s: %s", name, type(exc).__name__, exc)
                row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            progress.advance()
        # the baselines, once, fitted (variogram, sensor climatology, EOFs) on the training sensors
        fitted = fit_period_baselines(config, seedings, [step_label(train_days[0]), step_label(train_days[-1])])
        scored = score_days(test_days, seedings, raw, None, data_range, fitted)
        for method in BASELINES:
            if method not in scored[0]["metrics"]:
                continue
            rows.append({"method": method, "kind": "baseline", "parameters": None, "seconds_per_epoch": None,
                         "infer_ms_per_field": float(np.mean([r["ms"][method] for r in scored])),
                         **mean_metrics(scored, method)})
        progress.advance()
    budget = {
        "epochs": config.compare.epochs, "pretrain_epochs": config.compare.pretrain_epochs,
        "max_batches_per_epoch": config.compare.max_batches_per_epoch, "batch_size": config.train.batch_size,
        "lr_generator": config.train.lr_generator, "lr_discriminator": config.train.lr_discriminator,
        "device": resolve_device(config.train.device), "paper_sizes": config.compare.paper_sizes,
        "infer_batch_size": infer_settings.batch_size, "infer_device": resolve_device(infer_settings.device),
    }
    report: dict[str, Any] = {
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "seedfield_version": code_version(), "seedings_store": redact_url(seedings.path), "raw_store": redact_url(raw.path),
        "upsampling": upsampling, "train_period": [step_label(train_days[0]), step_label(train_days[-1])],
        "val_period": [step_label(val_days[0]), step_label(val_days[-1])], "test_period": [step_label(test_days[0]), step_label(test_days[-1])],
        "n_train_days": len(train_days), "n_val_days": len(val_days), "n_test_days": len(test_days),
        "data_range": data_range, "budget": budget, "rows": rows,
        "ok": not any(r.get("error") for r in rows),
    }
    write_bytes_atomic(str(json_path), json.dumps(report, indent=1).encode())  # a kill leaves the old report or none
    if markdown_path:
        write_markdown(Path(markdown_path), report)
    table = [{h: _fmt(r, k, f) if not r.get("error") else _cell(r["error"], 60) for k, h, f in COLUMNS} for r in rows]
    create_table_artifact(table, key="compare-table", description=f"model zoo on {test_days[0]}…{test_days[-1]}")
    create_markdown_artifact("## Model zoo comparison\n\n" + markdown_table(rows), key="compare-summary")
    logger.info("comparison:\n%s", markdown_table(rows))
    return report


def compare_key(cfg: SeedfieldConfig, name: str, seedings_path: str, train_days: list[dt.date],
                val_days: list[dt.date]) -> str:
    """A short fingerprint of everything one architecture's training depends on (its settings,
    the seedings store, the periods, seedfield's version). It names the model it publishes,
    ``zoo-<architecture>-<key>``, so a re-run of the same comparison (after a kill, say) finds
    the models already trained and resumes an interrupted training from its checkpoints."""
    body = {
        "architecture": name, "seedings": seedings_path, "version": code_version(),
        "train": [step_label(train_days[0]), step_label(train_days[-1]), len(train_days)],
        "val": [step_label(val_days[0]), step_label(val_days[-1]), len(val_days)],
        "settings": (cfg.sensornet if name == "sensornet" else cfg.train).model_dump(mode="json"),
        "seeding": cfg.seeding.model_dump(mode="json"),
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _train_and_score(
    cfg: SeedfieldConfig, name: str, model_id: str, key: str, registry: ModelRegistry, train_days: list[dt.date],
    val_days: list[dt.date], test_days: list[dt.date], norm: Any, upsampling: int, seedings: StepStore,
    raw: StepStore, data_range: float, infer_settings: Any, logger: Any,
) -> dict[str, Any]:
    """Train one architecture and publish it (not current), or take the model an earlier run of
    the same comparison published; time its inference and score it."""
    published = registry.meta(model_id) if model_id in registry.list() else {}
    if published.get("compare_key") == key and published.get("checkpoint_sha256") == registry.fingerprint(model_id):
        logger.info("compare: %s already trained by an earlier run of this comparison (%s)", name, model_id)
        if not cfg.compare.keep_checkpoints:
            registry.drop_workdir(model_id)
        return _score(registry, model_id, name, published, test_days, seedings, raw, data_range, infer_settings, logger)
    if registry.stale_workdir(model_id):
        registry.drop_workdir(model_id)
    workdir = registry.workdir(model_id)
    try:
        if name == "sensornet":  # sensors at their cells; its own budget ([sensornet] iterations)
            result = train_sensornet_task.with_options(task_run_name=f"train-{model_id}")(
                cfg, model_id, train_days, val_days, str(workdir))
        else:
            result = train_task.with_options(task_run_name=f"train-{model_id}")(
                cfg, model_id, train_days, val_days, norm, upsampling, str(workdir))
    except BaseException:
        if not cfg.compare.keep_checkpoints:
            registry.discard_unpublished(model_id)
        raise
    meta = {
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(), "purpose": "seedfield compare",
        "architecture": name, "seedings_store": redact_url(seedings.path), "raw_store": redact_url(raw.path),
        "seeding": seeding_params(seedings), "train_period": [step_label(train_days[0]), step_label(train_days[-1])],
        "val_period": [step_label(val_days[0]), step_label(val_days[-1])], "n_train_days": len(train_days),
        "n_val_days": len(val_days), "train": cfg.train.model_dump(mode="json"), "kept_epoch": result["kept_epoch"],
        "train_seconds": round(result["seconds"], 1), "history": result["history"],
        "seedfield_version": code_version(), "compare_key": key, "parameters": result.get("parameters"),
    }
    curve = loss_curve_png(result["history"], f"{model_id} ({name})", result["kept_epoch"])
    registry.publish(model_id, Path(result["kept_checkpoint"]), meta, make_current=False, files={"loss.png": curve})
    if not cfg.compare.keep_checkpoints:
        registry.drop_workdir(model_id)
    return _score(registry, model_id, name, meta, test_days, seedings, raw, data_range, infer_settings, logger)


def _score(registry: ModelRegistry, model_id: str, name: str, meta: dict[str, Any], test_days: list[dt.date],
           seedings: StepStore, raw: StepStore, data_range: float, infer_settings: Any, logger: Any) -> dict[str, Any]:
    """Time and score the published ``model_id``; its training figures come from ``meta``."""
    from model.generator import count_parameters

    engine, _ = engine_for(registry, model_id, infer_settings)
    hr, ms = time_inference(engine, seedings, test_days)
    metrics = mean_metrics(score_days(test_days, seedings, raw, hr, data_range, baselines=False), "model")
    # SensorNet's history is per validation score (cumulative seconds): its whole run is one "epoch"
    seconds = [meta["train_seconds"]] if name == "sensornet" else [h["seconds"] for h in meta["history"]]
    logger.info("compare: %s trained in %.0f s (kept epoch %s), %.1f ms/field, RMSE %.4f", name,
                meta["train_seconds"], meta["kept_epoch"], ms, metrics["rmse"])
    return {
        "model_id": model_id,
        "parameters": meta.get("parameters") or count_parameters(engine.generator),
        "seconds_per_epoch": float(np.mean(seconds)), "infer_ms_per_field": ms,
        "kept_epoch": meta["kept_epoch"], **metrics,
    }

"""Training flow: a task (one at a time per registry, :func:`training_slot`) that trains the configured architecture
(RaSeedGAN by default) on the seedings and publishes the early-stopping checkpoint to the model
registry."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE
from prefect.runtime import flow_run as runtime_flow_run

from flows.config import SeedfieldConfig
from flows.dask_runtime import dask_client
from flows.prefect_flow import flow
from flows.prepare import stream_norm_stats
from flows.sensornet import train_sensornet_task
from flows.train_progress import EPOCHS_KEY, TrainingProgress, rounded, want_bar
from flows.training_data import FreshSeedings, StoredSeedings
from pipeline.normalisation import NormStats
from pipeline.plots import loss_curve_png
from pipeline.secrets import redact_url
from pipeline.steps import step_label
from storage.cf import code_version
from storage.model_registry import ModelRegistry, local_dir
from storage.seedings_store import seeding_params
from storage.step_store import StepStore, StoreError

#: The model id of this process's latest training (the CLI's line about a lost API names it).
TRAINING: dict[str, str] = {}
TRAIN_TAG = "training"  # a label for the UI; one training at a time is flows.train.training_slot


def split_days(days: list[dt.date], val_fraction: float) -> tuple[list[dt.date], list[dt.date]]:
    """Chronological split: the last ``val_fraction`` of the days validate (at least one each)."""
    if len(days) < 2:
        raise StoreError(f"need at least 2 prepared days to train, found {len(days)}")
    n_val = min(max(1, round(len(days) * val_fraction)), len(days) - 1)
    return days[:-n_val], days[-n_val:]


def training_slot(config: SeedfieldConfig, purpose: str) -> contextlib.AbstractContextManager[None]:
    """One training at a time per model registry (the GPU's), waiting up to
    ``split.slot_wait_s`` for it and saying so; a holder that died is taken over at once.

    A lock file beside the registry (:func:`flows.locks.slot`), not a Prefect tag concurrency
    limit: a SIGKILLed training kept such a slot until its lease expired, and a temporary
    Prefect server never expires it, so every later training hung without a word.

    A registry on an object store keeps this lock in its local cache folder
    (:func:`storage.model_registry.local_dir`): one training at a time per host. Across hosts,
    run trainings through a Prefect work pool with concurrency 1."""
    from flows.locks import slot

    logger = get_run_logger()
    return slot(local_dir(config.stores.registry), "training", purpose, config.split.slot_wait_s,
                on_wait=lambda message: logger.warning("%s", message))


def to_model_norm(norm: NormStats):
    from model.data import Normalisation

    return Normalisation(lr_mean=norm.lr_mean, lr_std=norm.lr_std, hr_mean=norm.hr_mean, hr_std=norm.hr_std)


def n_processes(config: SeedfieldConfig) -> int:
    if config.split.processes:
        return config.split.processes
    import torch

    if config.train.device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return torch.cuda.device_count()
    return 1


def _sources(config: SeedfieldConfig, train_days: list[dt.date], val_days: list[dt.date]) -> tuple[Any, Any, dict, dict]:
    """The train/val sources, and their factory specs for torchrun workers."""
    opts = config.stores.storage_options or None
    val = StoredSeedings(config.stores.seedings, val_days, opts)
    val_spec = {"factory": "flows.training_data:stored_seedings_source",
                "kwargs": {"path": config.stores.seedings, "days": [step_label(d) for d in val_days], "storage_options": opts}}
    if config.train.fresh_seedings:
        params = config.seeding.model_dump()
        train = FreshSeedings(config.stores.raw, config.stores.seedings, train_days, params, opts)
        train_spec = {"factory": "flows.training_data:fresh_seedings_source",
                      "kwargs": {"raw_path": config.stores.raw, "seedings_path": config.stores.seedings,
                                 "days": [step_label(d) for d in train_days], "params": params, "storage_options": opts}}
    else:
        train = StoredSeedings(config.stores.seedings, train_days, opts)
        train_spec = {"factory": "flows.training_data:stored_seedings_source",
                      "kwargs": {"path": config.stores.seedings, "days": [step_label(d) for d in train_days], "storage_options": opts}}
    return train, val, train_spec, val_spec


@task(name="train-model", task_run_name="train-{model_id}", tags=[TRAIN_TAG], cache_policy=NONE)
def train_task(
    config: SeedfieldConfig, model_id: str, train_days: list[dt.date], val_days: list[dt.date],
    norm: NormStats, upsampling: int, workdir: str, show_bar: bool = False,
) -> dict[str, Any]:
    """Train in this process, or under torchrun (DDP) when several processes are asked for.

    In this process the training shows its progress (:class:`flows.train_progress.TrainingProgress`):
    a bar when ``show_bar``, the progress artifact ``train-progress`` and the table artifact
    ``train-epochs`` gaining a row per epoch. Under torchrun only the table, at the end."""
    from model.data import SparseFieldDataset
    from model.trainer import Trainer

    logger = get_run_logger()
    mnorm = to_model_norm(norm)
    train_src, val_src, train_spec, val_spec = _sources(config, train_days, val_days)
    procs = n_processes(config)
    t0 = time.perf_counter()
    if procs > 1:
        np.savez(Path(workdir) / "norm.npz", **{k: getattr(norm, k) for k in ("lr_mean", "lr_std", "hr_mean", "hr_std")})  # 2-D or (12, h, w)
        spec = {"train": train_spec, "val": val_spec, "norm": str(Path(workdir) / "norm.npz"),
                "config": config.train.model_dump(mode="json"), "workdir": workdir, "upsampling": upsampling}
        spec_path = Path(workdir) / "spec.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
               "-m", "model.train_entry", "--spec", str(spec_path)]
        logger.info("launching DDP training: %s", " ".join(cmd))
        subprocess.run(cmd, check=True)
        result = json.loads((Path(workdir) / "result.json").read_text())
        # torchrun's ranks draw no bar: the table of epochs comes at the end
        create_table_artifact([rounded(h) for h in result["history"]], key=EPOCHS_KEY,
                              description=f"per-epoch losses of {model_id}")
    else:
        with TrainingProgress(model_id, show_bar) as progress:
            trainer = Trainer(
                config.train,
                SparseFieldDataset(train_src, mnorm, time_features=config.train.time_features),
                SparseFieldDataset(val_src, mnorm, time_features=config.train.time_features),
                mnorm, Path(workdir), upsampling=upsampling, extra_meta={"model_id": model_id},
                on_epoch=lambda rec: progress.on_record(asdict(rec)), on_progress=progress.on_step,
            )
            for rec in trainer.history:  # a resumed training's earlier epochs
                progress.rows.append(rounded(asdict(rec)))
            res = trainer.fit()
        result = {
            "kept_checkpoint": str(res.kept_checkpoint), "last_checkpoint": str(res.last_checkpoint),
            "kept_epoch": res.kept_epoch, "history": [vars(r) for r in res.history],
            "interpolation_alpha": res.interpolation_alpha,
        }
    result["seconds"] = time.perf_counter() - t0
    result["processes"] = procs
    return result


@flow(name="train", flow_run_name="train-{model_id}")
def train_flow(config: SeedfieldConfig, start: dt.datetime | dt.date, end: dt.datetime | dt.date, model_id: str | None = None,
               progress_bar: bool | None = None) -> dict[str, Any]:
    """Train on the prepared days of [start, end] (last 20 % validate) and publish the model, with
    its loss curve (``loss.png``). ``progress_bar``: a bar on the console (default: when it is
    a terminal)."""
    logger = get_run_logger()
    show_bar = want_bar(progress_bar)
    model_id = model_id or ModelRegistry.new_id(config.train.architecture)
    TRAINING["model_id"] = model_id  # the CLI names it when the run is interrupted
    store = StepStore(config.stores.seedings, config.stores.storage_options or None)
    if not StepStore.exists(store.path, store.storage_options):
        raise StoreError(f"{store.path}: no seedings store; run `seedfield prepare` first")
    days = store.committed_between(start, end)
    train_days, val_days = split_days(days, config.split.val_fraction)
    logger.info("model %s: %d training days %s…%s, %d validation days %s…%s", model_id,
                len(train_days), train_days[0], train_days[-1], len(val_days), val_days[0], val_days[-1])
    norm = None
    if config.train.architecture != "sensornet":  # SensorNet normalises by its own sensor context
        with dask_client(config.dask, jobs=-(-len(train_days) // 32)):  # stream_norm_stats: 32 days a job
            norm = stream_norm_stats(config, store, train_days, seasonal=config.train.seasonal_norm)
    params = seeding_params(store)
    registry = ModelRegistry(config.stores.registry, config.stores.storage_options)
    with training_slot(config, f"train {model_id} (flow run {runtime_flow_run.id or 'local'})"):
        if registry.stale_workdir(model_id):  # retraining a published id: start afresh, do not resume it
            logger.info("model %s is published; its earlier training's checkpoints are not resumed", model_id)
            registry.drop_workdir(model_id)
        workdir = registry.workdir(model_id)
        if config.train.architecture == "sensornet":
            result = train_sensornet_task(config, model_id, train_days, val_days, str(workdir), show_bar)
        else:
            result = train_task(config, model_id, train_days, val_days, norm, int(params["upsampling"]), str(workdir),
                                show_bar)
    meta = {
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "seedings_store": redact_url(store.path), "raw_store": redact_url(config.stores.raw),
        "seeding": params, "train_period": [step_label(train_days[0]), step_label(train_days[-1])],
        "val_period": [step_label(val_days[0]), step_label(val_days[-1])], "n_train_days": len(train_days),
        "n_val_days": len(val_days), "train": config.train.model_dump(mode="json"),
        **({"sensornet": config.sensornet.model_dump(mode="json"), "parameters": result["parameters"]}
           if config.train.architecture == "sensornet" else {}),
        "kept_epoch": result["kept_epoch"], "train_seconds": round(result["seconds"], 1),
        "processes": result["processes"], "history": result["history"], "seedfield_version": code_version(),
    }
    curve = loss_curve_png(result["history"], f"{model_id} ({config.train.architecture})", result["kept_epoch"])
    # The summary first: when the Prefect API is gone this fails before anything is published, so
    # the re-run resumes this training from its checkpoints instead of retraining a published id.
    create_markdown_artifact(
        f"## Model `{model_id}`\n\nTrained on {len(train_days)} days ({train_days[0]} … {train_days[-1]}), "
        f"validated on {len(val_days)} ({val_days[0]} … {val_days[-1]}) in {result['seconds']:.0f} s "
        f"on {result['processes']} process(es).\n\nKept epoch {result['kept_epoch']} "
        f"(the checkpoint before the validation loss first rose). Published to "
        f"`{redact_url(registry.url_of(model_id, 'model.pt'))}`, with its loss curve `loss.png` beside it.",
        key="train-summary",
    )
    path = registry.publish(model_id, Path(result["kept_checkpoint"]), meta, files={"loss.png": curve})
    logger.info("published %s (epoch %s) to %s", model_id, result["kept_epoch"], redact_url(path))
    return {"model_id": model_id, "checkpoint": redact_url(path), "kept_epoch": result["kept_epoch"],
            "seconds": result["seconds"], "history": result["history"]}

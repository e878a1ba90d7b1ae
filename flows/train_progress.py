"""What a training shows while it runs: the trainer's plain callbacks (``model.trainer.Trainer``
``on_progress``/``on_epoch``, ``model.sensornet_fit.fit_sensornet`` ``on_step``/``on_progress``)
turned into a terminal bar, a Prefect progress artifact, a table artifact that gains a row per
epoch (or per validation score) and a log line per row."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext
from rich.console import Console

from flows.progress import RunProgress

#: the training's Prefect artifacts: its progress (0…100) and its table of epochs
PROGRESS_KEY = "train-progress"
EPOCHS_KEY = "train-epochs"
SENSORNET_KEY = "train-sensornet-curve"
#: the progress artifact is updated at most this often (the bar at every step)
ARTIFACT_INTERVAL_S = 2.0


def want_bar(progress_bar: bool | None) -> bool:
    """``None``: a bar when the console is a terminal."""
    return Console().is_terminal if progress_bar is None else bool(progress_bar)


def rounded(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in record.items()}


class TrainingProgress:
    """Bar and artifacts of one training (``model_id``); use as a context manager.

    ``on_step(done, total, numbers)`` moves the bar (created at the first step, when the total
    is known; a resumed training starts part-way) and the progress artifact; ``on_record(row)``
    adds a row to the table artifact ``table_key`` (a new version of it, holding every row so
    far) and logs it."""

    def __init__(self, model_id: str, show_bar: bool, table_key: str = EPOCHS_KEY,
                 unit: str = "epoch", description: str | None = None) -> None:
        self.model_id = model_id
        self.show_bar = show_bar
        self.table_key = table_key
        self.unit = unit
        self.description = description or f"per-{unit} losses of {model_id}"
        self.rows: list[dict[str, Any]] = []
        self.bar: RunProgress | None = None
        self.in_flow = FlowRunContext.get() is not None
        self.logger = get_run_logger() if self.in_flow else None

    def __enter__(self) -> TrainingProgress:
        return self

    def on_step(self, done: int, total: int, numbers: Mapping[str, float]) -> None:
        if self.bar is None:
            self.bar = RunProgress(total, f"train {self.model_id}", PROGRESS_KEY, self.show_bar,
                                   completed=max(done - 1, 0), min_interval_s=ARTIFACT_INTERVAL_S)
            self.bar.__enter__()
        self.bar.update(done, self._info(numbers))

    def _info(self, numbers: Mapping[str, float]) -> str:
        parts = []
        if "epoch" in numbers:
            parts.append(f"epoch {int(numbers['epoch'])}")
        for key in ("loss", "train_rmse"):
            if key in numbers:
                parts.append(f"{key.replace('_', ' ')} {numbers[key]:.4g}")
        if self.rows:
            last = self.rows[-1]
            for key in ("val_content", "val_rmse"):
                if isinstance(last.get(key), float):
                    parts.append(f"val {last[key]:.4g}")
        return " · ".join(parts)

    def on_record(self, record: Mapping[str, Any]) -> None:
        self.rows.append(rounded(record))
        if self.logger is not None:
            self.logger.info("%s %s: %s", self.unit, record.get(self.unit, len(self.rows)),
                             ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in record.items() if k != self.unit))
        if self.in_flow:
            try:
                create_table_artifact(self.rows, key=self.table_key, description=self.description)
            except Exception as exc:  # a lost API stops the table, not the training (flows.api_loss)
                from flows.api_loss import api_lost, warn_once

                if api_lost(exc) is None:
                    raise
                self.in_flow = False
                warn_once(self, f"the table of {self.unit}s", exc)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.bar is not None:
            with contextlib.suppress(Exception):  # a dead API must not hide the training's own error
                self.bar.__exit__(exc_type, exc, tb)

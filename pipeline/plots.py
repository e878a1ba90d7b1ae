"""Pictures people would rather look at than read: maps, error maps, spectra (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def cell_edges(lat: np.ndarray, lon: np.ndarray) -> list[float]:
    """[west, east, south, north] of the grid's outer cell edges (regular grid), for imshow."""
    dlat = float(lat[1] - lat[0]) if len(lat) > 1 else 1.0
    dlon = float(lon[1] - lon[0]) if len(lon) > 1 else 1.0
    return [lon[0] - dlon / 2, lon[-1] + dlon / 2, lat[0] - dlat / 2, lat[-1] + dlat / 2]


def comparison_maps(
    path: Path, title: str, lat: np.ndarray, lon: np.ndarray, truth: np.ndarray,
    fields: Mapping[str, np.ndarray], sensors: tuple[np.ndarray, np.ndarray], lr_field: np.ndarray,
    land: np.ndarray,
) -> Path:
    """Truth, sensors, LR bins, each reconstruction and its error, on one figure.

    fields: name → (ny, nx) reconstruction on the native grid; sensors: (flat index, value);
    lr_field: the LR bins repeated onto the native grid.
    """
    ext = cell_edges(lat, lon)
    ocean = ~land
    vmin, vmax = np.nanpercentile(truth[ocean], [1, 99])
    err_lim = max(float(np.nanpercentile(np.abs(fields[n] - truth)[ocean], 99)) for n in fields) or 1.0
    panels = [("truth", truth, "field"), ("LR bins (model input)", lr_field, "field")]
    for name, f in fields.items():
        panels.append((name, f, "field"))
    for name, f in fields.items():
        panels.append((f"{name} − truth", f - truth, "error"))
    n = len(panels) + 1
    cols = 3
    rows = -(-n // cols)
    aspect = (ext[1] - ext[0]) / max(ext[3] - ext[2], 1e-6)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 4.2, rows * 4.2 / max(aspect, 0.5) + 0.6), squeeze=False)
    axs = axes.ravel()

    def show(ax, data, kind, label):
        data = np.where(ocean, data, np.nan)
        if kind == "field":
            im = ax.imshow(data, origin="lower", extent=ext, vmin=vmin, vmax=vmax, cmap="turbo")
        else:
            im = ax.imshow(data, origin="lower", extent=ext, vmin=-err_lim, vmax=err_lim, cmap="RdBu_r")
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.7, label="°C")

    show(axs[0], panels[0][1], "field", "truth")
    ax = axs[1]
    _ny, nx = truth.shape
    idx, val = sensors
    r, c = np.divmod(idx, nx)
    ax.imshow(np.where(land, 1.0, np.nan), origin="lower", extent=ext, cmap="Greys", vmin=0, vmax=2)
    sc = ax.scatter(lon[c], lat[r], c=val, s=2, cmap="turbo", vmin=vmin, vmax=vmax)
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.set_title(f"{len(idx)} sensors", fontsize=9)
    fig.colorbar(sc, ax=ax, shrink=0.7, label="°C")
    for ax, (label, data, kind) in zip(axs[2:], panels[1:], strict=False):
        show(ax, data, kind, label)
    for ax in axs[n:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def spectra_plot(path: Path, title: str, spectra: Mapping[str, tuple[np.ndarray, np.ndarray]], dx_deg: float) -> Path:
    """Radially averaged power spectra of each method (log–log), truth included."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, (k, p) in spectra.items():
        keep = (k > 0) & np.isfinite(p) & (p > 0)
        ax.loglog(k[keep], p[keep], label=name, lw=2.2 if name == "truth" else 1.3,
                  color="black" if name == "truth" else None)
    ax.set_xlabel(f"wavenumber (cycles per degree; grid {dx_deg:g}°)")
    ax.set_ylabel("power spectral density (°C² · deg²)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


#: the curves a training history may hold, as (key, label): the zoo trainer's per epoch,
#: SensorNet's per validation score
LOSS_CURVES = (
    ("train_content", "train content"), ("val_content", "validation content"),
    ("train_adversarial", "train adversarial"), ("train_d", "discriminator"),
    ("train_perceptual", "train perceptual"),
    ("train_rmse", "train RMSE (withheld sensors)"), ("val_rmse", "validation RMSE"), ("val_mae", "validation MAE"),
)


def loss_curve_png(history: Sequence[Mapping[str, Any]], title: str, kept: float | None = None) -> bytes:
    """The training curves of ``history`` (records with ``epoch`` or ``iteration``) as PNG bytes,
    a log axis when every value is positive, the kept epoch/iteration marked."""
    x_key = "epoch" if any("epoch" in r for r in history) else "iteration"
    fig, ax = plt.subplots(figsize=(7, 4))
    positive = True
    for key, label in LOSS_CURVES:
        points = [(float(r[x_key]), float(r[key])) for r in history
                  if key in r and r.get(x_key) is not None and r[key] is not None and np.isfinite(float(r[key]))]
        if not points or all(v == 0.0 for _, v in points):
            continue
        positive = positive and all(v > 0 for _, v in points)
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o" if len(xs) < 40 else None, markersize=3, label=label)
    if kept is not None:
        ax.axvline(float(kept), color="grey", linestyle="--", linewidth=1, label=f"kept ({x_key} {kept:g})")
    if positive and ax.lines:
        ax.set_yscale("log")
    ax.set_xlabel(x_key)
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()

"""Small PNG maps of one day, light enough to embed in a Prefect markdown artifact as a data: URI."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from pipeline.plots import cell_edges


def quicklook_png(
    field: np.ndarray, lat: np.ndarray, lon: np.ndarray, land: np.ndarray, title: str,
    max_bytes: int = 200_000, width_in: float = 6.4,
) -> bytes:
    """A PNG map of ``field`` (ny, nx) with land grey, at most ``max_bytes`` (lower dpi until it fits)."""
    ext = cell_edges(lat, lon)
    ocean = ~land & np.isfinite(field)
    vmin, vmax = (np.nanpercentile(field[ocean], [1, 99]) if ocean.any() else (0.0, 1.0))
    aspect = (ext[3] - ext[2]) / max(ext[1] - ext[0], 1e-6)
    height_in = min(max(width_in * aspect + 0.9, 2.5), 8.0)
    data = np.where(ocean, field, np.nan)
    for dpi in (90, 72, 56, 42, 30):
        fig, ax = plt.subplots(figsize=(width_in, height_in))
        ax.set_facecolor("#bdbdbd")
        ax.imshow(np.where(land, 1.0, np.nan), origin="lower", extent=ext, cmap="Greys", vmin=0, vmax=3)
        im = ax.imshow(data, origin="lower", extent=ext, vmin=vmin, vmax=vmax, cmap="turbo",
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.8, label="°C")
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        png = buf.getvalue()
        if len(png) <= max_bytes:
            return png
    return png


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,…`` for a markdown image."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")

"""DINEOF: EOF reconstruction of a time series of gappy fields (Beckers & Rixen 2003).

The input is a stack ``(T, ny, nx)`` that is NaN wherever no sensor fell. The steps of
Beckers & Rixen (2003) and Alvera-Azcárate et al. (2005):

1. subtract a mean (here per cell, over the steps where the cell was sensed) and set every
   missing anomaly to 0;
2. hold out a random part of the sensed values (``cv_fraction``) for cross-validation;
3. for k = 1, 2, …: repeat *truncated SVD of rank k → replace the missing (and held-out)
   entries by the rank-k reconstruction* until the missing entries change by less than ``tol``
   (relative, see ``tol``), then score the reconstruction at the held-out sensors; each k starts from the
   previous k's filled matrix; stop after ``patience`` values of k without improvement and
   keep the smallest k within ``cv_rel_tol`` of the lowest misfit;
4. put the held-out values back and iterate to convergence with the best k.

Speed: the rank-k SVD of each iteration is one step of block subspace iteration warm-started
from the previous iteration's right singular vectors (``k + oversample`` columns), not a fresh
SVD: the matrix changes little between iterations, so one product with ``X`` and one with
``Xᵀ`` keep the subspace converged, and the fixed point is the same as with exact SVDs. The
matrix is float32. See ``benchmarks/era5_baselines.py`` for measured times.

:func:`project_sensors` reconstructs steps outside the series (a held-back test period) from
their sensors alone, by a ridge (Gaussian-prior) least-squares fit of the learned EOF amplitudes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.baselines import fill_nearest

__all__ = ["DineofResult", "dineof", "project_sensors"]


@dataclass
class DineofResult:
    """Output of :func:`dineof`.

    Attributes:
        filled: float32 (T, ny, nx): the sensed values where sensed (NaN-free input kept
            exactly), the rank-``n_eofs`` reconstruction elsewhere.
        mean: float64 (ny, nx), the per-cell mean removed before the EOF analysis (cells
            never sensed: nearest sensed cell's mean).
        eofs: float64 (n_eofs, ny·nx), orthonormal spatial EOFs (rows).
        singular_values: float64 (n_eofs,).
        n_eofs: EOFs retained (chosen by cross-validation unless fixed).
        cv_rms: RMS misfit at the held-out sensors for each k tried.
        n_steps: T, the number of steps the EOFs were learned from.
        iterations: EM iterations run in all.
    """

    filled: np.ndarray
    mean: np.ndarray
    eofs: np.ndarray
    singular_values: np.ndarray
    n_eofs: int
    cv_rms: dict[int, float] = field(default_factory=dict)
    n_steps: int = 0
    iterations: int = 0

    @property
    def noise_var(self) -> float:
        """Mean-square misfit at the held-out sensors for the retained k (NaN if not CV'd)."""
        return self.cv_rms.get(self.n_eofs, float("nan")) ** 2


class _Svd:
    """Warm-started truncated SVD of a changing matrix by block subspace iteration."""

    def __init__(self, n_cols: int, rank: int, oversample: int, rng: np.random.Generator):
        self.rank = rank
        self.v = np.linalg.qr(rng.standard_normal((n_cols, rank + oversample)))[0]
        self.v = self.v.astype(np.float32)

    def grow(self, rank: int, rng: np.random.Generator) -> None:
        """Change the rank; the subspace keeps its first vectors and gains random ones."""
        extra = rank - self.rank
        if extra > 0:
            new = rng.standard_normal((self.v.shape[0], extra)).astype(np.float32)
            self.v = np.linalg.qr(np.concatenate([self.v, new], axis=1))[0].astype(np.float32)
        self.rank = rank

    def step(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One subspace iteration on ``x``; returns ``u (T,k), s (k,), vt (k,N)``."""
        q = np.linalg.qr(x @ self.v)[0]
        ub, s, vt = np.linalg.svd(q.T @ x, full_matrices=False)
        self.v = np.ascontiguousarray(vt.T)
        k = self.rank
        return q @ ub[:, :k], s[:k], vt[:k]


def _em(
    x: np.ndarray,
    mean: np.ndarray,
    missing: np.ndarray,
    svd: _Svd,
    tol: float,
    max_iter: int,
    relax: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Iterate *re-centre → rank-k SVD → refill missing* in place until converged.

    ``x`` holds anomalies from ``mean``. Re-centring each column of the completed matrix (and
    moving the offset into ``mean``, in place) makes the model ``mean + rank k`` jointly fitted,
    so an error of the initial per-cell mean (estimated from few sensors) does not cost an EOF.
    ``relax`` > 1 over-relaxes the refill (``x ← x + relax·(recon − x)`` on missing entries).
    """
    u = s = vt = np.empty(0)
    weight = missing.astype(np.float32)
    diff = np.empty_like(x)  # one work buffer, reused: the matrix can be hundreds of MB
    prev_step = np.inf
    for it in range(1, max_iter + 1):
        offset = x.mean(axis=0)
        x -= offset
        mean += offset
        u, s, vt = svd.step(x)
        np.matmul(u * s, vt, out=diff)
        diff -= x
        diff *= weight  # recon − x on the missing entries, 0 on the sensed ones
        step = float(np.linalg.norm(diff))
        diff *= relax
        x += diff
        # EM converges linearly and slowly with most entries missing: the distance to the fixed
        # point is about step/(1−ρ) with ρ the contraction rate, far more than the last step.
        rate = step / prev_step
        prev_step = step
        remaining = step / (1.0 - rate) if rate < 1.0 else np.inf
        if remaining < tol * max(float(np.linalg.norm(np.multiply(x, weight, out=diff))), 1e-30):
            return u, s, vt, it
    return u, s, vt, max_iter


def dineof(
    stack: np.ndarray,
    *,
    max_eofs: int = 30,
    n_eofs: int | None = None,
    cv_fraction: float = 0.03,
    tol: float = 1e-3,
    max_iter: int = 300,
    patience: int = 3,
    oversample: int = 5,
    cv_rel_tol: float = 0.01,
    relax: float = 1.5,
    seed: int = 0,
) -> DineofResult:
    """Fill a gappy field series with DINEOF.

    Args:
        stack: float (T, ny, nx), NaN where there is no sensor.
        max_eofs: largest number of EOFs tried.
        n_eofs: fix the number of EOFs instead of choosing it by cross-validation.
        cv_fraction: part of the sensed values held out to choose the number of EOFs.
        tol: convergence threshold on the relative distance of the missing entries to the
            fixed point, estimated from the last step and the observed contraction rate.
        max_iter: EM iterations at most per number of EOFs.
        patience: stop trying larger k after this many k without a lower CV misfit.
        oversample: extra subspace vectors of the warm-started SVD.
        cv_rel_tol: keep the smallest k whose CV misfit is within this fraction of the lowest
            (DINEOF keeps the lowest; 0 does the same).
        relax: over-relaxation of the refill (1: plain DINEOF; 1.5 reached the same fixed
            point in ~35–40% fewer iterations on the synthetic tests).
        seed: seed of the cross-validation draw and of the initial subspace.

    Returns:
        :class:`DineofResult`.
    """
    stack = np.asarray(stack, dtype=np.float64)
    if stack.ndim != 3:
        raise ValueError(f"stack must be (T, ny, nx), got shape {stack.shape}")
    t, ny, nx = stack.shape
    flat = stack.reshape(t, ny * nx)
    sensed = np.isfinite(flat)
    if not sensed.any():
        raise ValueError("the stack has no sensed value")
    count = sensed.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(sensed, flat, 0.0).sum(axis=0) / count
    mean = fill_nearest(mean.reshape(ny, nx)).astype(np.float64).ravel()
    k_max = max(1, min(max_eofs, t - 1, ny * nx - 1) if n_eofs is None else n_eofs)
    rng = np.random.default_rng(seed)

    x = np.where(sensed, flat - mean, 0.0).astype(np.float32)
    mean32 = mean.astype(np.float32)
    obs_r, obs_c = np.nonzero(sensed)
    n_cv = round(cv_fraction * obs_r.size) if n_eofs is None else 0
    pick = rng.choice(obs_r.size, n_cv, replace=False) if n_cv else np.empty(0, np.int64)
    cv_r, cv_c = obs_r[pick], obs_c[pick]
    cv_obs = flat[cv_r, cv_c].astype(np.float32)
    missing = ~sensed
    missing[cv_r, cv_c] = True
    x[cv_r, cv_c] = 0.0

    svd = _Svd(ny * nx, 1 if n_eofs is None else k_max, oversample, rng)
    cv_rms: dict[int, float] = {}
    iterations = 0
    best_k, best = k_max, np.inf
    if n_cv:
        for k in range(1, k_max + 1):
            svd.grow(k, rng)
            _, _, _, it = _em(x, mean32, missing, svd, tol, max_iter, relax)
            iterations += it
            cv_rms[k] = float(np.sqrt(np.mean((x[cv_r, cv_c] + mean32[cv_c] - cv_obs) ** 2)))
            if cv_rms[k] < best:
                best = cv_rms[k]
            if k - min(j for j in cv_rms if cv_rms[j] <= best) >= patience:
                break
        # The smallest k within cv_rel_tol of the best misfit: past the true rank, the misfit
        # stalls at the noise level and the minimum is a toss-up between near-equal values.
        best_k = min(j for j in cv_rms if cv_rms[j] <= best * (1.0 + cv_rel_tol))
        # Back to the best k, with the held-out sensors as data again.
        missing[cv_r, cv_c] = False
        x[cv_r, cv_c] = cv_obs - mean32[cv_c]
        svd.rank = best_k
    _, s, vt, it = _em(x, mean32, missing, svd, tol, max_iter, relax)
    iterations += it
    x += mean32
    return DineofResult(
        filled=x.reshape(t, ny, nx),
        mean=mean32.astype(np.float64).reshape(ny, nx),
        eofs=vt.astype(np.float64),
        singular_values=s.astype(np.float64),
        n_eofs=int(s.size),
        cv_rms=cv_rms,
        n_steps=t,
        iterations=iterations,
    )


def project_sensors(
    result: DineofResult,
    index: np.ndarray,
    value: np.ndarray,
    noise_var: float | None = None,
) -> np.ndarray:
    """Reconstruct one step that was not in the series from its sensors and learned EOFs.

    The EOF amplitudes ``a`` solve the ridge problem
    ``min ‖E[:, idx]ᵀ a − (z − m[idx])‖² / σ² + Σ_j a_j² / λ_j`` (the posterior mean under a
    Gaussian prior): ``λ_j = s_j² / T`` is the variance of mode j's amplitude over the training
    steps and ``σ²`` the misfit variance (default: the cross-validation mean-square misfit, or
    1e-3 of the smallest ``λ_j`` without one). The field is ``m + Eᵀ a``.

    Args:
        result: a :func:`dineof` result (EOFs learned on other steps).
        index: int (n,), flat row-major sensor indices into the (ny, nx) grid.
        value: float (n,), sensor values.
        noise_var: override ``σ²``.

    Returns:
        float32 (ny, nx).
    """
    index = np.asarray(index, dtype=np.int64).ravel()
    value = np.asarray(value, dtype=np.float64).ravel()
    if index.shape != value.shape:
        raise ValueError(f"index {index.shape} and value {value.shape} differ in length")
    mean = result.mean.ravel()
    lam = result.singular_values**2 / max(result.n_steps, 1)
    if noise_var is None:
        noise_var = result.noise_var
        if not np.isfinite(noise_var) or noise_var <= 0:
            noise_var = 1e-3 * float(lam.min())
    e = result.eofs[:, index]  # (k, n)
    lhs = e @ e.T / noise_var + np.diag(1.0 / lam)
    rhs = e @ (value - mean[index]) / noise_var
    amp = np.linalg.solve(lhs, rhs)
    return (mean + amp @ result.eofs).reshape(result.mean.shape).astype(np.float32)

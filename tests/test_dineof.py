"""DINEOF reconstruction of gappy field series (pipeline.dineof)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.baselines import interpolate_scattered
from pipeline.dineof import dineof, project_sensors

SHAPE = (24, 32)


def low_rank_series(
    steps: int, rank: int, seed: int, noise: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """``10 + Σ_j a_j(t)·φ_j(x) + noise``: smooth modes, amplitude std 3·2^-j; returns (field, modes)."""
    rng = np.random.default_rng(seed)
    ny, nx = SHAPE
    yy, xx = np.mgrid[0:ny, 0:nx] / max(ny, nx)
    modes = []
    for j in range(rank):
        kx, ky, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
        modes.append(np.cos(2 * np.pi * kx * xx + phase) * np.sin(2 * np.pi * ky * yy + j))
    modes_arr = np.array(modes).reshape(rank, -1)
    amps = rng.standard_normal((steps, rank)) * (3.0 * 2.0 ** -np.arange(rank))
    field = 10.0 + amps @ modes_arr + noise * rng.standard_normal((steps, ny * nx))
    return field.reshape(steps, *SHAPE), modes_arr


def sample(field: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Random sensors per step (about ``fraction`` of the cells): bool (T, ny, nx)."""
    return np.random.default_rng(seed).random(field.shape) < fraction


@pytest.mark.slow  # ~8-16 s per case: DINEOF's cross-validated EOF count
@pytest.mark.parametrize(("rank", "seed"), [(4, 1), (6, 2)])
def test_recovers_a_low_rank_series_and_its_rank(rank: int, seed: int) -> None:
    truth, _ = low_rank_series(250, rank, seed)
    sensed = sample(truth, 0.15, seed)
    res = dineof(np.where(sensed, truth, np.nan), max_eofs=12)
    assert abs(res.n_eofs - rank) <= 1, res.cv_rms
    assert res.filled.shape == truth.shape and np.isfinite(res.filled).all()
    # sensed values are kept, the gaps are filled to about the noise level (0.01; std ~1.7)
    np.testing.assert_allclose(res.filled[sensed], truth[sensed], atol=1e-4)
    assert np.sqrt(np.mean((res.filled - truth)[~sensed] ** 2)) < 0.03
    # cross-validation: too few EOFs leave a much larger misfit than the retained number
    assert res.cv_rms[rank - 1] > 3 * res.cv_rms[res.n_eofs]
    # the EOFs are orthonormal
    np.testing.assert_allclose(res.eofs @ res.eofs.T, np.eye(res.n_eofs), atol=1e-4)


def test_projects_new_steps_onto_training_eofs() -> None:
    truth, _ = low_rank_series(260, 4, seed=3)
    sensed = sample(truth, 0.15, seed=3)
    train = np.where(sensed, truth, np.nan)[:200]
    res = dineof(train, max_eofs=10)
    errs, cubic = [], []
    for t in range(200, 260):
        index = np.flatnonzero(sensed[t])
        value = truth[t].ravel()[index]
        pred = project_sensors(res, index, value)
        assert pred.shape == SHAPE and pred.dtype == np.float32
        errs.append(np.sqrt(np.mean((pred - truth[t]) ** 2)))
        interp = interpolate_scattered(index, value, SHAPE, "cubic")
        cubic.append(np.sqrt(np.mean((interp - truth[t]) ** 2)))
    assert np.mean(errs) < 0.03
    assert np.mean(errs) < 0.25 * np.mean(cubic)


def test_projection_with_few_sensors_is_damped_not_wild() -> None:
    truth, _ = low_rank_series(150, 4, seed=4)
    res = dineof(np.where(sample(truth, 0.15, seed=4), truth, np.nan), n_eofs=4)
    assert res.n_eofs == 4 and res.cv_rms == {}
    index = np.array([5, 300])  # fewer sensors than EOFs: ridge keeps the fit bounded
    pred = project_sensors(res, index, truth[0].ravel()[index])
    assert np.isfinite(pred).all()
    assert np.abs(pred - res.mean).max() < 4 * np.abs(truth - res.mean).max()


def test_cells_never_sensed_get_the_nearest_mean() -> None:
    truth, _ = low_rank_series(120, 2, seed=5)
    sensed = sample(truth, 0.2, seed=5)
    sensed[:, 0, 0] = False
    res = dineof(np.where(sensed, truth, np.nan), n_eofs=2)
    assert np.isfinite(res.filled).all()
    assert np.isfinite(res.mean).all()


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no sensed"):
        dineof(np.full((5, 4, 4), np.nan))
    with pytest.raises(ValueError, match="T, ny, nx"):
        dineof(np.zeros((4, 4)))

"""Land-aware metrics (pipeline.metrics) and power spectra (pipeline.spectra)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pipeline.metrics import (
    bias,
    default_data_range,
    evaluate,
    hfen,
    log_filter,
    log_kernel,
    mae,
    psnr,
    rmse,
    ssim,
    window_mask,
)
from pipeline.spectra import radial_power_spectrum

SHAPE = (80, 120)


def smooth(seed: int, sigma: float = 4.0, offset: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.normal(size=SHAPE), sigma)
    return offset + f / f.std()


def pair(seed: int = 0, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    truth = smooth(seed, offset=offset)
    pred = truth + 0.3 * smooth(seed + 100, sigma=2.0)
    return pred, truth


def land() -> np.ndarray:
    y, x = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    isl = (y - 30) ** 2 + (x - 40) ** 2 < 12**2
    isl |= (y > 60) & (x > 90)  # coast on the domain edge
    return isl


def test_point_metrics() -> None:
    truth = np.zeros((4, 4))
    pred = np.full((4, 4), 2.0)
    pred[0, 0] = -2.0
    mask = np.ones((4, 4), bool)
    assert rmse(pred, truth, mask) == pytest.approx(2.0)
    assert mae(pred, truth, mask) == pytest.approx(2.0)
    assert bias(pred, truth, mask) == pytest.approx((15 * 2 - 2) / 16)
    mask[0, 0] = False
    assert bias(pred, truth, mask) == pytest.approx(2.0)


@pytest.mark.parametrize(("seed", "offset"), [(0, 0.0), (1, 20.0), (2, -1.8)])
def test_psnr_and_ssim_match_skimage_on_land_free_fields(seed: int, offset: float) -> None:
    pred, truth = pair(seed, offset)
    mask = np.ones(SHAPE, bool)
    data_range = float(truth.max() - truth.min())
    assert psnr(pred, truth, mask, data_range) == pytest.approx(
        peak_signal_noise_ratio(truth, pred, data_range=data_range), abs=1e-9
    )
    ref = structural_similarity(
        truth,
        pred,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
    )
    assert ssim(pred, truth, mask, data_range) == pytest.approx(ref, abs=1e-6)


def test_ssim_with_land_is_the_skimage_map_over_the_eroded_ocean() -> None:
    pred, truth = pair(3)
    mask = ~land()
    _, smap = structural_similarity(
        truth,
        pred,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=4.0,
        full=True,
    )
    inner = window_mask(mask, 5)
    assert ssim(pred, truth, mask, 4.0) == pytest.approx(smap[inner].mean(), abs=1e-6)


def test_window_mask() -> None:
    mask = np.ones((20, 20), bool)
    inner = window_mask(mask, 5)
    assert inner.sum() == 10 * 10 and inner[5:15, 5:15].all()
    mask[10, 10] = False
    inner = window_mask(mask, 2)
    assert not inner[8:13, 8:13].any() and inner[7, 7]
    ocean = ~land()
    square = np.ones((11, 11), bool)
    ref = ndimage.binary_erosion(ocean, structure=square, border_value=0)
    np.testing.assert_array_equal(window_mask(ocean, 5), ref)


def test_land_values_do_not_affect_any_metric() -> None:
    pred, truth = pair(4, offset=15.0)
    mask = ~land()
    base = evaluate(pred, truth, mask, data_range=5.0)
    rng = np.random.default_rng(9)
    pred2, truth2 = pred.copy(), truth.copy()
    pred2[~mask] = rng.normal(0, 1e3, (~mask).sum())
    truth2[~mask] = np.nan  # land is NaN in the archive
    assert evaluate(pred2, truth2, mask, data_range=5.0) == base
    assert default_data_range(truth2, mask) == default_data_range(truth, mask)
    assert base["n_cells"] == float(mask.sum())


def test_identical_fields() -> None:
    _, truth = pair(5, offset=20.0)
    mask = ~land()
    out = evaluate(truth, truth, mask, data_range=default_data_range(truth, mask))
    assert out["rmse"] == 0 and out["mae"] == 0 and out["bias"] == 0
    assert out["psnr"] == math.inf
    assert out["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert out["hfen"] == 0
    assert set(out) == {"rmse", "mae", "bias", "psnr", "ssim", "hfen", "n_cells"}


def test_hfen_grows_with_high_frequency_error() -> None:
    truth = smooth(6)
    mask = ~land()
    rng = np.random.default_rng(6)
    noise = rng.normal(size=SHAPE)
    values = [hfen(truth + a * noise, truth, mask) for a in (0.01, 0.05, 0.2)]
    assert values[0] < values[1] < values[2]
    # at equal RMSE, high-frequency error costs more HFEN than a smooth error
    smooth_err = smooth(7, sigma=8.0)
    hf_err = noise / noise.std()
    assert hfen(truth + 0.1 * hf_err, truth, mask) > 5 * hfen(truth + 0.1 * smooth_err, truth, mask)
    # and HFEN is blind to a constant offset
    assert hfen(truth + 3.0, truth, mask) == pytest.approx(0.0, abs=1e-9)


def test_log_kernel() -> None:
    k = log_kernel()
    assert k.shape == (15, 15)
    assert abs(k.sum()) < 1e-12
    assert k[7, 7] == k.min()  # negative centre
    x = smooth(10, sigma=1.0)
    np.testing.assert_allclose(
        log_filter(x), ndimage.convolve(x, k, mode="reflect"), rtol=1e-9, atol=1e-12
    )


def test_nan_in_prediction_inside_mask_is_an_error() -> None:
    pred, truth = pair(8)
    mask = ~land()
    bad = pred.copy()
    ys, xs = np.nonzero(mask)
    bad[ys[:3], xs[:3]] = np.nan
    with pytest.raises(ValueError, match="3 non-finite"):
        evaluate(bad, truth, mask, 4.0)
    with pytest.raises(ValueError, match="3 non-finite"):
        rmse(bad, truth, mask)
    bad_land = pred.copy()
    bad_land[~mask] = np.nan
    assert np.isfinite(evaluate(bad_land, truth, mask, 4.0)["ssim"])


def test_default_data_range() -> None:
    truth = np.array([[1.0, 5.0], [np.nan, 30.0]])
    mask = np.array([[True, True], [False, False]])
    assert default_data_range(truth, mask) == 4.0
    with pytest.raises(ValueError):
        default_data_range(truth, np.zeros((2, 2), bool))


def test_spectrum_peaks_at_the_wave_and_white_noise_is_flat() -> None:
    n = 128
    _, x = np.mgrid[0:n, 0:n]
    wave = np.sin(2 * np.pi * x / 16)  # k = 1/16 cycles per cell
    mask = np.ones((n, n), bool)
    k, p = radial_power_spectrum(wave, mask, dx=1.0)
    assert k[np.argmax(p)] == pytest.approx(1 / 16, abs=1 / n)
    assert k.max() <= 0.5 + 1 / n and np.all(np.diff(k) > 0)
    # white noise: flat at s² dx²
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 2.0, (n, n))
    k, p = radial_power_spectrum(noise, mask, dx=0.5)
    assert np.median(p) == pytest.approx(4.0 * 0.25, rel=0.15)
    # land values are ignored
    isl = np.zeros((n, n), bool)
    isl[40:60, 40:60] = True
    a = noise.copy()
    a[isl] = 1e6
    np.testing.assert_allclose(
        radial_power_spectrum(a, ~isl)[1], radial_power_spectrum(noise, ~isl)[1]
    )

"""Seasonal (per-calendar-month) normalisation: accumulation, fallback, interpolation, use."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from model.data import Normalisation, make_input, make_target, month_weights
from model.generator import RaSeedGenerator
from model.inference import InferenceEngine
from pipeline.normalisation import StreamingStats, finalize, finalize_seasonal


def test_month_weights_are_exact_at_mid_month_and_cyclic():
    assert month_weights(16) == (0, 1, 0.0)  # 16 January: all January
    a, b, w = month_weights(1)  # 1 January: between mid-December and mid-January
    assert (a, b) == (11, 0) and 0.4 < w < 0.6
    assert month_weights(350) == (11, 0, 0.0)


def test_finalize_seasonal_per_month_and_annual_fallback():
    shape = (2, 3)
    lr, hr = StreamingStats(shape), StreamingStats(shape)
    months = [StreamingStats(shape) for _ in range(12)]
    rng = np.random.default_rng(0)
    for day in range(60):  # January and February only
        month = 0 if day < 31 else 1
        x = rng.normal(10 * month, 1.0, shape)
        w = np.ones(shape, bool)
        lr.update(x, w)
        hr.update(x, w)
        months[month].update(x, w)
    n = finalize_seasonal(lr, hr, months, months, min_count=5)
    assert n.hr_mean.shape == (12, 2, 3)
    assert abs(n.hr_mean[0].mean() - 0) < 0.5 and abs(n.hr_mean[1].mean() - 10) < 0.5
    annual = finalize(lr, hr)
    np.testing.assert_allclose(n.hr_mean[5], annual.hr_mean)  # June had no sample: annual stats
    assert np.all(n.hr_std[0] < annual.hr_std)  # within-month spread excludes the seasonal jump


def seasonal_norm(h=4, w=8, s=4) -> Normalisation:
    months = np.arange(12, dtype="f4")[:, None, None]
    return Normalisation(
        lr_mean=np.broadcast_to(months, (12, h, w)).copy(), lr_std=np.ones((12, h, w), "f4"),
        hr_mean=np.broadcast_to(10 * months, (12, h * s, w * s)).copy(), hr_std=np.full((12, h * s, w * s), 2, "f4"),
    )


def test_inputs_and_targets_use_the_days_statistics():
    norm = seasonal_norm()
    x = make_input(np.full((4, 8), 3.0), np.ones((4, 8)), norm, day_of_year=dt.date(2019, 3, 16).timetuple().tm_yday,
                   time_features=False)
    assert x.shape == (2, 4, 8) and np.allclose(x[0], 3.0 - 2.0)  # March mean is 2
    t, f = make_target(np.full((16, 32), 20.0), np.ones((16, 32)), norm, day_of_year=16)
    assert np.allclose(t, (20.0 - 0.0) / 2.0) and f.all()
    with pytest.raises(ValueError, match="day of year"):
        make_input(np.zeros((4, 8)), np.ones((4, 8)), norm)


def test_prediction_is_denormalised_with_the_days_climatology():
    gen = RaSeedGenerator(in_channels=2, out_channels=1, upsampling=4, n_features=4, n_res_blocks=1,
                          upsample_features=16)
    with torch.no_grad():
        for p in gen.parameters():
            p.zero_()  # the network says "anomaly 0": the prediction is the day's climatology
    engine = InferenceEngine(gen, seasonal_norm(), device="cpu")
    lr = np.zeros((2, 4, 8), "f4")
    out = engine.predict(lr, np.ones_like(lr), day_of_year=np.array([16, 46]))
    assert np.allclose(out[0], 0.0)  # mid-January: month 0 → 10·0
    a, b, w = month_weights(46)
    assert np.allclose(out[1], 10 * ((1 - w) * a + w * b), atol=1e-5)

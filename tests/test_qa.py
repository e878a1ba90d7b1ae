"""The daily QA's re-binning check (``flows.infer.rebin_qa``), by hand: the prediction's bin
means against the sensors' bin means, over the seeded bins only, land cells left out."""

from __future__ import annotations

import numpy as np

from flows.infer import rebin_qa


def test_rebin_qa_by_hand():
    native = np.array([[1.0, 3.0, 10.0, 10.0],
                       [1.0, 3.0, 10.0, 10.0],
                       [np.nan, 5.0, 0.0, 0.0],
                       [5.0, 5.0, 0.0, 4.0]], dtype="float32")
    # bin means of the prediction: [[2, 10], [5 (land cell left out), 1]]
    lr_mean = np.array([[2.5, 9.0], [4.0, 99.0]], dtype="float32")
    lr_count = np.array([[3, 2], [1, 0]], dtype="int16")  # the last bin has no sensor: not scored
    rmse, bias = rebin_qa(native, lr_mean, lr_count, 2)
    diff = np.array([2 - 2.5, 10 - 9.0, 5 - 4.0])
    assert rmse == np.sqrt(np.mean(diff**2)) and bias == np.mean(diff)


def test_rebin_qa_is_exact_when_the_prediction_keeps_the_bin_means_and_nan_without_sensors():
    rng = np.random.default_rng(0)
    native = rng.normal(15, 3, (8, 8)).astype("float32")
    lr_mean = native.reshape(4, 2, 4, 2).mean(axis=(1, 3))
    rmse, bias = rebin_qa(native, lr_mean, np.ones((4, 4), "int16"), 2)
    assert rmse < 1e-6 and abs(bias) < 1e-6
    rmse, bias = rebin_qa(native + 0.5, lr_mean, np.ones((4, 4), "int16"), 2)
    assert abs(rmse - 0.5) < 1e-5 and abs(bias - 0.5) < 1e-5  # a uniform offset is all bias
    assert np.isnan(rebin_qa(native, lr_mean, np.zeros((4, 4), "int16"), 2)).all()

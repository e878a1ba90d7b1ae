"""SensorNet: input assembly with withheld sensors, masked loss, zero-init, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.sensornet import (
    SensorNet,
    build_input,
    input_channels,
    load_sensornet,
    masked_loss,
    save_sensornet,
    training_input,
    withhold,
)
from pipeline.sensor_features import step_channels

SHAPE = (16, 24)


def _sensors(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(SHAPE[0] * SHAPE[1], size=n, replace=False))
    return index, rng.normal(0.0, 1.0, size=n).astype(np.float32)


def _context(k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    neigh = np.stack([step_channels(*_sensors(60, seed=10 + j), SHAPE) for j in range(k)])
    static = np.random.default_rng(3).normal(size=(1, *SHAPE)).astype(np.float32)
    extra = np.random.default_rng(4).normal(size=(2, *SHAPE)).astype(np.float32)
    return neigh, static, extra


def test_withhold_partitions_sensors():
    index, value = _sensors()
    ki, _kv, hi, hv = withhold(index, value, 0.3, np.random.default_rng(0))
    assert hi.size == round(0.3 * index.size) and ki.size + hi.size == index.size
    assert np.intersect1d(ki, hi).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([ki, hi])), index)
    lookup = dict(zip(index.tolist(), value.tolist(), strict=True))
    assert all(lookup[i] == v for i, v in zip(hi.tolist(), hv.tolist(), strict=True))
    with pytest.raises(ValueError):
        withhold(index, value, 1.0, np.random.default_rng(0))


def test_build_input_channel_count():
    neigh, static, extra = _context(3)
    centre = step_channels(*_sensors(), SHAPE)
    x = build_input(centre, neigh, static, extra)
    assert x.shape == (input_channels(3, 1, 2), *SHAPE) and x.dtype == np.float32
    x0 = build_input(centre, neigh[:0], static[:0], None)
    assert x0.shape[0] == input_channels(0, 0, 0) == 3


def test_withheld_sensors_are_absent_from_every_input_channel():
    """Changing the withheld sensors' values changes no input channel; the centre mask is 0
    at their cells; the target holds them and the weight marks exactly them."""
    index, value = _sensors()
    neigh, static, extra = _context()
    x1, _t1, w1 = training_input(index, value, SHAPE, neigh, static, extra, 0.4, np.random.default_rng(7))
    _, _, hi, _ = withhold(index, value, 0.4, np.random.default_rng(7))
    poisoned = value.copy()
    poisoned[np.isin(index, hi)] = 1e6
    x2, t2, w2 = training_input(index, poisoned, SHAPE, neigh, static, extra, 0.4, np.random.default_rng(7))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(w1, w2)
    assert (t2.ravel()[hi] == 1e6).all()
    assert np.flatnonzero(w1.ravel()).tolist() == sorted(hi.tolist())
    assert (x1[1].ravel()[hi] == 0).all()  # centre mask
    assert (x1[2].ravel()[hi] > 0).all()  # centre distance: no sensor there
    assert x1[1].sum() == index.size - hi.size


def test_masked_loss_reads_only_weighted_cells():
    torch.manual_seed(0)
    pred = torch.randn(2, 1, *SHAPE, requires_grad=True)
    target = torch.randn(2, *SHAPE)
    weight = (torch.rand(2, *SHAPE) < 0.1).float()
    ref = masked_loss(pred, torch.where(weight > 0, target, torch.zeros_like(target)), weight)
    for junk in (float("nan"), 1e9, float("inf")):
        bad = torch.where(weight > 0, target, torch.full_like(target, junk))
        loss = masked_loss(pred, bad, weight)
        assert torch.isfinite(loss) and loss.item() == pytest.approx(ref.item(), rel=1e-6)
        (grad,) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(grad).all()
        assert (grad[:, 0][weight == 0] == 0).all()
    expected = ((pred[:, 0] - target)[weight > 0] ** 2).mean()
    assert ref.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError):
        masked_loss(pred, target, torch.zeros_like(weight))


def test_zero_init_returns_the_base_and_honours_sensors():
    net = SensorNet(input_channels(2, 1, 2), features=8, depth=2)
    neigh, static, extra = _context()
    x = torch.from_numpy(build_input(step_channels(*_sensors(), SHAPE), neigh, static, extra))[None]
    out = net(x)
    assert out.shape == (1, 1, *SHAPE)
    torch.testing.assert_close(out, x[:, 0:1], rtol=0, atol=0)
    with torch.no_grad():  # a trained-like net still returns the sensor values at sensors
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    out = net(x)
    sensed = x[:, 1:2] > 0
    assert not torch.equal(out, x[:, 0:1])
    torch.testing.assert_close(out[sensed], x[:, 0:1][sensed], rtol=0, atol=0)


def test_odd_grid_sizes_pass_through():
    net = SensorNet(5, features=4, depth=2)
    assert net(torch.randn(2, 5, 13, 21)).shape == (2, 1, 13, 21)
    with pytest.raises(ValueError):
        net(torch.randn(2, 4, 13, 21))


def test_checkpoint_round_trip(tmp_path):
    net = SensorNet(11, features=6, depth=1, honour_sensors=False, padding_mode="zeros")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    save_sensornet(tmp_path / "sn.pt", net, {"mean": 5.0, "std": 2.0, "offsets": [-1, 1]})
    net2, meta = load_sensornet(tmp_path / "sn.pt")
    assert net2.constructor_args() == net.constructor_args()
    assert meta == {"mean": 5.0, "std": 2.0, "offsets": [-1, 1]}
    x = torch.randn(1, 11, 8, 12)
    torch.testing.assert_close(net2(x), net.eval()(x))
    with pytest.raises(ValueError):
        SensorNet(3, base_channel=3)


def test_training_patches_hold_their_sensor_and_stay_inside_the_domain():
    """A patch is drawn around a withheld sensor, shifted inside the domain; its loss region is
    the patch less an 8-cell margin, except where the patch meets the domain's own edge."""
    from model.sensornet_samples import PATCH_MARGIN, patch_boxes, uses_patches

    shape, patch = (60, 90), 16
    assert uses_patches(shape, patch) and not uses_patches((20, 30), patch) and not uses_patches(shape, 0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        cells = rng.choice(shape[0] * shape[1], size=40, replace=False)
        held, kept = cells[:10], cells[10:]
        (r0, r1, c0, c1), (s0, s1, t0, t1) = patch_boxes(shape, patch, held, kept, rng)
        assert 0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]
        assert (r1 - r0, c1 - c0) == (patch + 2 * PATCH_MARGIN,) * 2  # one size: samples stack
        assert s0 == (r0 if r0 == 0 else r0 + PATCH_MARGIN) and s1 == (r1 if r1 == shape[0] else r1 - PATCH_MARGIN)
        assert t0 == (c0 if c0 == 0 else c0 + PATCH_MARGIN) and t1 == (c1 if c1 == shape[1] else c1 - PATCH_MARGIN)
        rows, cols = np.divmod(held, shape[1])
        assert ((rows >= s0) & (rows < s1) & (cols >= t0) & (cols < t1)).any()  # its sensor is scored


def test_patches_are_drawn_where_interpolation_is_least_certain():
    """An isolated withheld sensor (far from every kept one) anchors patches far more often."""
    from model.sensornet_samples import patch_boxes

    shape, nx = (100, 100), 100
    kept = np.array([r * nx + c for r in range(0, 50, 3) for c in range(0, 100, 3)])  # dense top half
    isolated, crowded = 90 * nx + 50, 10 * nx + 11
    rng = np.random.default_rng(1)
    near_isolated = sum(patch_boxes(shape, 16, np.array([isolated, crowded]), kept, rng)[1][0] > 50 for _ in range(300))
    assert near_isolated > 280

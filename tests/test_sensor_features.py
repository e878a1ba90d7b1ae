"""Per-step sensor channels and the sensor climatology (pipeline.sensor_features)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.sensor_features import (
    STEP_CHANNELS,
    SensorClimatology,
    base_interpolant,
    distance_to_sensors,
    holdout_residuals,
    sensor_mask,
    sparse_values,
    step_channels,
)

SHAPE = (16, 24)


def _sensors(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(SHAPE[0] * SHAPE[1], size=n, replace=False))
    value = rng.normal(10.0, 3.0, size=n).astype(np.float32)
    return index, value


def test_step_channels_shapes_and_order():
    index, value = _sensors()
    ch = step_channels(index, value, SHAPE)
    assert ch.shape == (len(STEP_CHANNELS), *SHAPE)
    assert ch.dtype == np.float32
    np.testing.assert_array_equal(ch[0], sparse_values(index, value, SHAPE))
    np.testing.assert_array_equal(ch[1], sensor_mask(index, SHAPE))
    assert ch[1].sum() == index.size
    assert np.isfinite(ch).all()


@pytest.mark.parametrize("method", ["cubic", "linear", "nearest"])
def test_base_is_exact_at_sensors(method):
    index, value = _sensors()
    base = base_interpolant(index, value, SHAPE, method)
    np.testing.assert_allclose(base.ravel()[index], value, rtol=0, atol=1e-5)
    assert np.isfinite(base).all()
    # and not trivially constant elsewhere
    assert base.std() > 0.5


def test_linear_base_reproduces_a_plane_inside_the_hull():
    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    plane = (0.3 * rows - 0.2 * cols + 5).astype(np.float64)
    corners = np.ravel_multi_index(([0, 0, 15, 15], [0, 23, 0, 23]), SHAPE)
    index = np.unique(np.concatenate([corners, _sensors(30)[0]]))
    base = base_interpolant(index, plane.ravel()[index], SHAPE, "linear")
    np.testing.assert_allclose(base, plane, atol=1e-4)


def test_distance_zero_at_sensors_positive_elsewhere():
    index, _ = _sensors()
    d = distance_to_sensors(index, SHAPE)
    assert (d.ravel()[index] == 0).all()
    others = np.setdiff1d(np.arange(d.size), index)
    assert (d.ravel()[others] >= 1).all()
    # one sensor in a corner: distance to the opposite corner is the diagonal
    d1 = distance_to_sensors(np.array([0]), SHAPE)
    assert d1[-1, -1] == pytest.approx(np.hypot(SHAPE[0] - 1, SHAPE[1] - 1), rel=1e-6)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        sparse_values(np.array([0, 0]), np.array([1.0, 2.0]), SHAPE)  # duplicate
    with pytest.raises(ValueError):
        sensor_mask(np.array([SHAPE[0] * SHAPE[1]]), SHAPE)  # out of range
    with pytest.raises(ValueError):
        distance_to_sensors(np.array([], dtype=np.int64), SHAPE)
    with pytest.raises(ValueError):
        base_interpolant(np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0]), SHAPE, "spline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not inside the grid"):
        step_channels(*_sensors(), SHAPE, "linear", box=(0, SHAPE[0] + 1, 0, 4))


@pytest.mark.parametrize("method", ["cubic", "linear", "nearest"])
def test_box_channels_equal_the_whole_grid_cropped(method):
    """Patch training reads exactly what inference on the whole grid reads: every channel of a
    box is computed from every sensor, including those outside the box."""
    index, value = _sensors()
    whole = step_channels(index, value, SHAPE, method)
    for box in [(0, SHAPE[0], 0, SHAPE[1]), (3, 14, 5, 20), (0, 1, SHAPE[1] - 1, SHAPE[1])]:
        r0, r1, c0, c1 = box
        part = step_channels(index, value, SHAPE, method, box=box)
        assert part.shape == (4, r1 - r0, c1 - c0)
        np.testing.assert_allclose(part, whole[:, r0:r1, c0:c1], rtol=0, atol=1e-6)


def test_climatology_mean_and_nearest_fill():
    clim = SensorClimatology((2, 3))
    clim.add(np.array([0, 5]), np.array([1.0, 10.0]))
    clim.add(np.array([0]), np.array([3.0]))
    m = clim.mean()
    assert m[0, 0] == pytest.approx(2.0)  # (1 + 3) / 2
    assert m[1, 2] == pytest.approx(10.0)
    assert m[0, 1] == pytest.approx(2.0)  # never sensed: nearest is (0, 0)
    assert m[1, 1] == pytest.approx(10.0)  # never sensed: nearest is (1, 2)
    assert np.isfinite(m).all()


def test_climatology_groups_and_shrink():
    clim = SensorClimatology((1, 2), n_groups=2)
    for _ in range(3):
        clim.add(np.array([0, 1]), np.array([0.0, 0.0]), group=0)
    clim.add(np.array([0]), np.array([8.0]), group=1)
    raw = clim.finalize()
    assert raw[0, 0, 0] == 0.0 and raw[1, 0, 0] == 8.0
    assert raw[1, 0, 1] == 8.0  # group 1 never saw cell 1: nearest within the group
    shrunk = clim.finalize(shrink=2.0)
    overall0 = 8.0 / 4  # cell 0 over both groups
    assert shrunk[1, 0, 0] == pytest.approx((8.0 + 2 * overall0) / (1 + 2))
    assert shrunk[1, 0, 1] == pytest.approx(0.0)  # unseen in the group: the overall mean
    with pytest.raises(ValueError):
        clim.add(np.array([0]), np.array([1.0]), group=2)
    with pytest.raises(ValueError):
        SensorClimatology((2, 2)).mean()


def test_holdout_residuals_vanish_on_constant_field_and_keep_order():
    index, _ = _sensors(50)
    rng = np.random.default_rng(1)
    ri, rv = holdout_residuals(index, np.full(index.size, 4.0), SHAPE, 5, rng)
    np.testing.assert_array_equal(ri, index)
    np.testing.assert_allclose(rv, 0.0, atol=1e-6)
    # a spike at one sensor shows up as that sensor's residual
    value = np.zeros(index.size)
    value[10] = 1.0
    _, rv = holdout_residuals(index, value, SHAPE, 5, rng)
    assert rv[10] == pytest.approx(1.0, abs=1e-6)


def test_kriging_base_and_its_context_survive_a_checkpoint():
    """A kriging base: exact at the sensors, equal to the whole grid's cropped in a box, its
    variogram fitted to the normalised training sensors and rebuilt from the saved arrays."""
    from pipeline.sensor_context import SensorContext, fit_context

    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    steps = []
    for k in range(12):
        index, _ = _sensors(60, seed=k)
        field = np.sin(rows / 4.0 + k) + np.cos(cols / 5.0) * 3.0 + 20.0
        steps.append((index, field.ravel()[index].astype(np.float32)))
    ctx = fit_context(steps, [k / 12 for k in range(12)], np.zeros(SHAPE, bool), groups=2, base="kriging")
    assert ctx.base == "kriging" and ctx.variogram is not None and ctx.variogram[1] > 0
    index, value = steps[0]
    whole = ctx.channels(index, value)
    np.testing.assert_allclose(whole[2].ravel()[index], ctx.normalise(value), atol=1e-4)
    np.testing.assert_allclose(ctx.channels(index, value, box=(2, 9, 3, 20)), whole[:, 2:9, 3:20], atol=1e-6)
    back = SensorContext.from_arrays(ctx.to_arrays())
    assert back.base == "kriging"
    np.testing.assert_array_equal(back.variogram, ctx.variogram)
    np.testing.assert_array_equal(back.channels(index, value), whole)
    with pytest.raises(ValueError, match="needs a variogram"):
        base_interpolant(index, value, SHAPE, "kriging")

"""Per-step sensor channels and the sensor climatology (pipeline.sensor_features)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.sensor_features import (
    STEP_CHANNELS,
    SensorClimatology,
    base_interpolant,
    distance_to_sensors,
    drift_reference,
    holdout_residuals,
    pool_sensors,
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


def test_cubic_plane_base_survives_a_checkpoint_and_crops_exactly():
    """The cubic base with a plane beyond the sensors' hull: exact at the sensors, a box equal to
    the whole grid's cropped, the same base after the context's arrays are saved and read."""
    from pipeline.sensor_context import SensorContext, fit_context

    rows, cols = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    steps = []
    for k in range(6):
        index, _ = _sensors(60, seed=k)
        field = 0.3 * rows - 0.2 * cols + np.sin(cols / 5.0 + k) + 20.0
        steps.append((index, field.ravel()[index].astype(np.float32)))
    ctx = fit_context(steps, [k / 6 for k in range(6)], np.zeros(SHAPE, bool), groups=2, base="cubic_plane")
    index, value = steps[0]
    whole = ctx.channels(index, value)
    np.testing.assert_allclose(whole[2].ravel()[index], ctx.normalise(value), atol=1e-5)
    np.testing.assert_allclose(ctx.channels(index, value, box=(0, 9, 0, 20)), whole[:, 0:9, 0:20], atol=1e-6)
    back = SensorContext.from_arrays(ctx.to_arrays())
    assert back.base == "cubic_plane"
    np.testing.assert_array_equal(back.channels(index, value), whole)
    plain = base_interpolant(index, ctx.normalise(value), SHAPE, "cubic")
    assert not np.array_equal(plain, whole[2])  # the cells beyond the hull differ


def test_pool_sensors_keeps_the_step_and_shifts_the_others_by_the_drift():
    """The step's own sensors come first, unchanged; another step's sensor joins only at a cell
    not yet taken (nearest step first), shifted by the difference of the two references."""
    ref = np.zeros(SHAPE, np.float32)
    ref_a = np.full(SHAPE, -0.5, np.float32)  # the field was 0.5 lower one step before
    ref_b = np.full(SHAPE, -1.0, np.float32)
    own = (np.array([0, 5, 9]), np.array([1.0, 2.0, 3.0], np.float32))
    a = (np.array([5, 7]), np.array([10.0, 20.0], np.float32), ref_a)  # cell 5 is taken by the step
    b = (np.array([7, 11]), np.array([30.0, 40.0], np.float32), ref_b)  # cell 7 is taken by a
    index, value = pool_sensors(*own, ref, [a, b])
    assert index.tolist() == [0, 5, 9, 7, 11]
    np.testing.assert_allclose(value, [1.0, 2.0, 3.0, 20.5, 41.0])
    with pytest.raises(ValueError):
        pool_sensors(np.array([0, 0]), np.array([1.0, 2.0]), ref, [])


def test_pooling_a_drifting_field_beats_the_step_alone():
    """A smooth field that drifts between steps, sensed at 2 % of the cells, new cells each
    step: the cubic interpolant of the drift-corrected pool of four steps is closer to the truth
    than the step's own interpolant and exact at its sensors; pooling without the drift
    correction is far worse than either."""
    shape = (48, 64)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    rng = np.random.default_rng(3)

    def field(k: int) -> np.ndarray:
        return (np.sin(xx / 10) * np.cos(yy / 11) + 0.3 * k * np.cos(xx / 20 + yy / 30)).astype(np.float32)

    steps, flat = [], np.zeros(shape, np.float32)
    for k in range(4):
        index = rng.choice(shape[0] * shape[1], size=shape[0] * shape[1] // 50, replace=False)
        value = field(k).ravel()[index]
        steps.append((index, value, drift_reference(base_interpolant(index, value, shape, "cubic"), 3.0)))
    index, value, ref = steps[-1]
    pi, pv = pool_sensors(index, value, ref, steps[-2::-1])
    assert pi.size > 3 * index.size

    def error(f: np.ndarray) -> float:
        return float(np.sqrt(np.mean((f - field(3))[4:-4, 4:-4] ** 2)))

    alone = error(base_interpolant(index, value, shape, "cubic"))
    pooled = base_interpolant(pi, pv, shape, "cubic")
    uncorrected = error(base_interpolant(*pool_sensors(index, value, flat, [(i, v, flat) for i, v, _ in steps[-2::-1]]),
                                         shape, "cubic"))
    assert error(pooled) < 0.85 * alone and uncorrected > 3 * alone, (error(pooled), alone, uncorrected)
    np.testing.assert_allclose(pooled.ravel()[index], value, atol=1e-5)
    with pytest.raises(ValueError):
        drift_reference(pooled, 0.0)

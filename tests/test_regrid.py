import numpy as np

from pipeline.regrid import hr_to_native


def test_constant_stays_constant_and_land_is_masked():
    land = np.zeros((8, 12), bool)
    land[:3, :5] = True
    out = hr_to_native(np.full((4, 6), 7.0, "f4"), 2, land)
    assert out.shape == (8, 12)
    assert np.isnan(out[land]).all() and np.allclose(out[~land], 7.0)


def test_coastal_cells_ignore_values_on_all_land_hr_cells():
    land = np.zeros((8, 8), bool)
    land[:, :4] = True  # the western half is land: HR columns 0-1 have no ocean
    hr = np.full((4, 4), 10.0, "f4")
    hr[:, :2] = 1000.0  # whatever a generator says over land
    out = hr_to_native(hr, 2, land)
    assert np.allclose(out[:, 4:], 10.0)  # without the fill, column 4 would mix in 1000
    assert np.isnan(out[:, :4]).all()


def test_bilinear_between_cell_centres():
    out = hr_to_native(np.array([[0.0, 4.0]], "f4"), 2)
    np.testing.assert_allclose(out[0], [0.0, 1.0, 3.0, 4.0])


def test_regridder_equals_hr_to_native():
    rng = np.random.default_rng(1)
    land = rng.random((16, 24)) < 0.3
    land[:8, :8] = True
    field = rng.normal(size=(8, 12)).astype("f4")
    from pipeline.regrid import NativeRegridder

    np.testing.assert_array_equal(NativeRegridder(land, 2).to_native(field), hr_to_native(field, 2, land))

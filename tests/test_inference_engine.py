"""Inference engine: tiling against the whole-domain pass, denormalisation, batching (CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import Normalisation, make_input
from model.generator import RaSeedGenerator
from model.inference import InferenceEngine, axis_plan, axis_weights


def unit_norm(h: int, w: int, s: int) -> Normalisation:
    return Normalisation(np.zeros((h, w)), np.ones((h, w)), np.zeros((h * s, w * s)), np.ones((h * s, w * s)))


def random_norm(h: int, w: int, s: int, seed: int = 0) -> Normalisation:
    rng = np.random.default_rng(seed)
    return Normalisation(
        lr_mean=rng.normal(15, 2, (h, w)), lr_std=rng.uniform(0.5, 2, (h, w)),
        hr_mean=rng.normal(15, 2, (h * s, w * s)), hr_std=rng.uniform(0.5, 2, (h * s, w * s)),
    )


def sparse_inputs(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(b, 1, h, w, generator=g) > 0.1).float()
    return torch.cat([torch.randn(b, 1, h, w, generator=g) * mask, mask], dim=1)


def lr_days(t: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    count = rng.poisson(3, (t, h, w))
    mean = np.where(count > 0, rng.normal(15, 2, (t, h, w)), np.nan).astype(np.float32)
    return mean, count


def test_axis_plan_and_weights_partition_unity():
    for n, tile, ov in ((48, 16, 12), (50, 16, 4), (20, 8, 0), (10, 16, 4)):
        plan = axis_plan(n, tile, ov)
        length = min(tile + 2 * ov, n)
        covered = np.zeros(n, int)
        for a, b, ws in plan:
            covered[a:b] += 1
            assert 0 <= ws and ws + length <= n  # every window lies in the domain, one length
            assert ws <= max(a - ov, 0) and ws + length >= min(b + ov, n)  # full context
        assert (covered == 1).all()
        s = 4
        total = np.zeros(n * s)
        for a, b, ws in plan:
            total[ws * s : (ws + length) * s] += axis_weights(n, (a, b), ws, length, 0.25 * ov, s)
        np.testing.assert_allclose(total, 1.0, atol=1e-12)  # seamless: weights sum to one


def test_tiling_is_exact_once_the_context_covers_the_receptive_field():
    torch.manual_seed(0)
    g = RaSeedGenerator(2, 1, upsampling=4, n_features=8, n_res_blocks=2, upsample_features=32)
    assert g.receptive_field_lr() == 11.5
    x = sparse_inputs(2, 40, 56)
    whole = InferenceEngine(g, unit_norm(40, 56, 4)).forward_normalised(x)
    # blend ramps use ±overlap/4, so every blended cell keeps 0.75·16 = 12 ≥ 11.5 cells of context
    tiled = InferenceEngine(g, unit_norm(40, 56, 4), tile=8, overlap=16, batch_size=5).forward_normalised(x)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


@pytest.mark.slow  # ~10-20 s: the reference-size generator on a large field
def test_tiled_matches_untiled_on_the_reference_generator():
    """The 16-block, 64-feature reference generator (receptive-field radius 39.5 LR cells at ×4),
    random weights, 48×48 LR: 3×3 tiles of 16 cells. Measured (two seeds): max |Δ| / std(output)
    ≈ 1.1–1.3 at overlap 4, 0.07 at 8, 0.00396 at 12; rms/std ≈ 3.5e-4 at 12."""
    torch.manual_seed(0)
    g = RaSeedGenerator(2, 1, upsampling=4)
    norm = unit_norm(48, 48, 4)
    x = sparse_inputs(1, 48, 48)
    whole = InferenceEngine(g, norm).forward_normalised(x)
    scale = float(whole.std())
    errors = {}
    for ov in (4, 8, 12):
        tiled = InferenceEngine(g, norm, tile=16, overlap=ov, batch_size=9).forward_normalised(x)
        d = (tiled - whole).abs()
        errors[ov] = (float(d.max()) / scale, float(d.pow(2).mean().sqrt()) / scale)
    assert errors[4][0] > errors[8][0] > errors[12][0]
    assert errors[12][0] <= 4e-3 and errors[12][1] < 1e-3  # docs/model.md: ≤ 4e-3 of the std at overlap 12


def test_predict_denormalises_to_physical_units():
    h, w, s = 6, 10, 4
    norm = random_norm(h, w, s)
    g = RaSeedGenerator(2, 1, upsampling=s, n_features=8, n_res_blocks=1, upsample_features=32)
    with torch.no_grad():
        g.tail.weight.zero_()
        g.tail.bias.fill_(0.5)  # normalised output 0.5 everywhere
    mean, count = lr_days(3, h, w)
    for tile in (None, 4):
        out = InferenceEngine(g, norm, tile=tile, overlap=2).predict(mean, count)
        assert out.shape == (3, h * s, w * s) and out.dtype == np.float32
        np.testing.assert_allclose(out, np.broadcast_to(0.5 * norm.hr_std + norm.hr_mean, out.shape), rtol=1e-6)


def test_predict_is_the_generator_on_make_input():
    h, w, s = 5, 7, 2
    norm = random_norm(h, w, s)
    torch.manual_seed(1)
    g = RaSeedGenerator(2, 1, upsampling=s, n_features=8, n_res_blocks=1, upsample_features=32).eval()
    mean, count = lr_days(2, h, w, seed=3)
    out = InferenceEngine(g, norm).predict(mean, count, day_of_year=np.array([1, 2]))  # doy ignored
    x = torch.from_numpy(np.stack([make_input(m, c, norm) for m, c in zip(mean, count, strict=True)]))
    with torch.no_grad():
        expected = g(x)[:, 0].numpy() * norm.hr_std + norm.hr_mean
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tile", [None, 4])
def test_batch_size_does_not_change_results(tile):
    h, w, s = 8, 12, 4
    norm = random_norm(h, w, s)
    torch.manual_seed(2)
    g = RaSeedGenerator(2, 1, upsampling=s, n_features=8, n_res_blocks=2, upsample_features=32)
    mean, count = lr_days(5, h, w, seed=4)
    a = InferenceEngine(g, norm, batch_size=1, tile=tile, overlap=2).predict(mean, count)
    b = InferenceEngine(g, norm, batch_size=3, tile=tile, overlap=2).predict(mean, count)
    c = InferenceEngine(g, norm, batch_size=64, tile=tile, overlap=2).predict(mean, count)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-5)


def test_time_features_need_day_of_year_and_shapes_are_checked():
    h, w, s = 4, 4, 2
    norm = random_norm(h, w, s)
    g4 = RaSeedGenerator(4, 1, upsampling=s, n_features=8, n_res_blocks=1, upsample_features=32)
    engine = InferenceEngine(g4, norm, time_features=True)
    mean, count = lr_days(2, h, w)
    with pytest.raises(ValueError, match="day_of_year"):
        engine.predict(mean, count)
    jan, jul = engine.predict(mean, count, day_of_year=np.array([1, 182]))[0], \
        engine.predict(mean, count, day_of_year=np.array([182, 182]))[0]
    assert not np.allclose(jan, jul)  # the season reaches the output
    with pytest.raises(ValueError, match="input channels"):
        InferenceEngine(g4, norm, time_features=False)
    with pytest.raises(ValueError, match=r"do not differ by the generator.s ×4"):
        InferenceEngine(RaSeedGenerator(2, 1, 4, 8, 1, 32), norm)

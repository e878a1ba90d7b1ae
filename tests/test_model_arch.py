"""Architectures, losses, the numpy→torch seam and checkpoints (CPU, small shapes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from model.data import Normalisation, SparseFieldDataset, input_channels, make_input
from model.discriminator import RaSeedDiscriminator
from model.generator import RaSeedGenerator, count_parameters
from model.losses import discriminator_loss, generator_loss, masked_mse, smoothed_labels
from model.synthetic import SyntheticSource, estimate_norm


def small_generator(upsampling: int = 4, in_channels: int = 2) -> RaSeedGenerator:
    return RaSeedGenerator(in_channels=in_channels, out_channels=1, upsampling=upsampling,
                           n_features=8, n_res_blocks=2, upsample_features=32)


def norm_for(h: int, w: int, s: int) -> Normalisation:
    rng = np.random.default_rng(0)
    return Normalisation(
        lr_mean=rng.normal(15, 1, (h, w)), lr_std=rng.uniform(0.5, 2, (h, w)),
        hr_mean=rng.normal(15, 1, (h * s, w * s)), hr_std=rng.uniform(0.5, 2, (h * s, w * s)),
    )


# ---------------------------------------------------------------- architectures
def test_reference_parameter_counts():
    """By hand (64 features, 16 blocks, 256 channels before each PixelShuffle(2), 1 channel in/out):
    a k×k convolution from c to d channels has k·k·c·d weights + d biases, a PReLU one per channel."""
    conv = lambda k, c, d: k * k * c * d + d  # noqa: E731
    head = conv(9, 1, 64) + 64                      # 9×9 convolution + PReLU
    block = 2 * conv(3, 64, 64) + 64                # two 3×3 convolutions + PReLU
    body_tail = conv(3, 64, 64)
    stage = conv(3, 64, 256) + 64                   # 3×3 to 256, PixelShuffle(2) → 64, PReLU
    tail = conv(9, 64, 1)
    assert head + 16 * block + body_tail + 2 * stage + tail == 1_525_697  # ×4: two stages
    assert count_parameters(RaSeedGenerator(in_channels=1, out_channels=1, upsampling=4)) == 1_525_697
    assert count_parameters(RaSeedGenerator(in_channels=1, out_channels=1, upsampling=8)) == 1_525_697 + stage


@pytest.mark.parametrize("s", [2, 4, 8])
@pytest.mark.parametrize("hw", [(3, 5), (4, 8), (7, 6)])
def test_generator_output_shapes(s, hw):
    g = small_generator(s)
    y = g(torch.zeros(2, 2, *hw))
    assert y.shape == (2, 1, hw[0] * s, hw[1] * s)
    assert g.upsampling == s
    assert RaSeedGenerator(**g.constructor_args()).constructor_args() == g.constructor_args()


def test_generator_rejects_bad_upsampling_and_bad_inputs():
    for bad in (0, 1, 3, 6, 12):
        with pytest.raises(ValueError, match="upsampling"):
            RaSeedGenerator(upsampling=bad)
    with pytest.raises(ValueError, match=r"\(B, 2, h, w\)"):
        small_generator()(torch.zeros(1, 3, 4, 4))


def test_receptive_field_of_the_reference():
    assert RaSeedGenerator(upsampling=8).receptive_field_lr() == pytest.approx(39.25)
    assert RaSeedGenerator(upsampling=4).receptive_field_lr() == pytest.approx(39.5)


def test_discriminator_takes_any_hr_size_and_returns_logits():
    d = RaSeedDiscriminator(in_channels=1, n_features=8, dense_features=32)
    for shape in ((16, 32), (40, 24)):
        out = d(torch.randn(3, 1, *shape))
        assert out.shape == (3, 1)
    assert d(torch.full((1, 1, 16, 16), 1e4)).isfinite().all()  # logits, no saturating sigmoid
    assert RaSeedDiscriminator(**d.constructor_args()).constructor_args() == d.constructor_args()


# ---------------------------------------------------------------- losses
def test_masked_mse_ignores_unflagged_cells():
    target = torch.randn(2, 1, 4, 4)
    flag = (torch.rand(2, 1, 4, 4) > 0.5).float()
    pred = target.clone()
    pred[flag == 0] = 1e6  # garbage where there is no sensor
    assert masked_mse(pred, target, flag) == 0
    pred = target + 2 * flag
    assert masked_mse(pred, target, flag).item() == pytest.approx(4.0)
    assert masked_mse(pred, target, torch.zeros_like(flag)) == 0  # Σflag = 0 → divides by 1


def test_labels_are_smoothed_in_range_and_redrawn_each_call():
    gen = torch.Generator().manual_seed(0)
    real1, real2 = smoothed_labels(256, True, gen, "cpu"), smoothed_labels(256, True, gen, "cpu")
    fake = smoothed_labels(256, False, gen, "cpu")
    assert real1.shape == (256, 1)
    assert ((real1 >= 0.8) & (real1 <= 1.0)).all() and ((fake >= 0) & (fake <= 0.2)).all()
    assert not torch.equal(real1, real2)
    assert real1.std() > 0.03


def test_generator_and_discriminator_losses():
    pred, target = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    flag = torch.ones_like(pred)
    content, info = generator_loss(pred, target, flag, None)
    assert info["adversarial"] == 0 and content.item() == pytest.approx(((pred - target) ** 2).mean().item())
    logits = torch.zeros(4, 1)  # D undecided: BCE = log 2 whatever the labels
    total, info = generator_loss(pred, target, flag, logits, adversarial_weight=0.5)
    assert info["adversarial"] == pytest.approx(np.log(2), rel=1e-6)
    assert total.item() == pytest.approx(content.item() + 0.5 * np.log(2), rel=1e-6)
    d_total, d_info = discriminator_loss(logits, logits)
    assert d_total.item() == pytest.approx(np.log(2), rel=1e-6) and set(d_info) == {"real", "fake", "total"}
    # a correct D beats an undecided one (smoothed labels keep the minimum above 0)
    good, _ = discriminator_loss(torch.full((4, 1), 2.0), torch.full((4, 1), -2.0))
    assert good.item() < d_total.item()


# ---------------------------------------------------------------- data seam
def test_make_input_channels_and_normalisation():
    norm = norm_for(2, 3, 2)
    lr_mean = np.array([[16.0, np.nan, 14.0], [15.0, 17.0, np.nan]], dtype=np.float32)
    lr_count = np.array([[2, 0, 1], [3, 1, 0]])
    x = make_input(lr_mean, lr_count, norm)
    assert x.shape == (input_channels(False), 2, 3) and x.dtype == np.float32
    seeded = lr_count > 0
    np.testing.assert_array_equal(x[1], seeded.astype(np.float32))
    np.testing.assert_allclose(x[0][seeded], ((lr_mean - norm.lr_mean) / norm.lr_std)[seeded], rtol=1e-6)
    assert (x[0][~seeded] == 0).all()
    xt = make_input(lr_mean, lr_count, norm, day_of_year=91)
    assert xt.shape == (input_channels(True), 2, 3)
    np.testing.assert_allclose(xt[2:, 0, 0], [np.sin(2 * np.pi * 91 / 365.25), np.cos(2 * np.pi * 91 / 365.25)],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="normalisation grid"):
        make_input(lr_mean[:, :2], lr_count[:, :2], norm)


def test_normalisation_rejects_nan_and_round_trips_tensors():
    norm = norm_for(2, 3, 2)
    back = Normalisation.from_tensors(norm.to_tensors())
    assert back.equals(norm)
    with pytest.raises(ValueError, match="non-finite"):
        Normalisation(np.full((2, 2), np.nan), np.ones((2, 2)), np.zeros((4, 4)), np.ones((4, 4)))


def test_dataset_item_shapes_and_target():
    src = SyntheticSource(3, hr_shape=(8, 16), upsampling=4, sensors_per_bin=3, seed=2)
    norm = estimate_norm(src)
    item = SparseFieldDataset(src, norm, time_features=True)[1]
    assert item["lr"].shape == (4, 2, 4) and item["hr"].shape == (1, 8, 16) and item["flag"].shape == (1, 8, 16)
    raw = src.sample(1, 0)
    flag = raw["hr_flag"] > 0
    np.testing.assert_array_equal(item["flag"][0].numpy(), flag.astype(np.float32))
    expected = (raw["hr_mean"] - norm.hr_mean) / norm.hr_std
    np.testing.assert_allclose(item["hr"][0].numpy()[flag], expected[flag], rtol=1e-5)
    assert (item["hr"][0].numpy()[~flag] == 0).all()


# ---------------------------------------------------------------- checkpoints
def _save(path, g, d=None, **kw):
    save_checkpoint(path, generator=g, discriminator=d, epoch=3, norm=norm_for(4, 6, 4),
                    config={"n_features": 8, "time_features": False}, history=[{"epoch": 1, "val": 0.5}],
                    extra={"model_id": "m"}, **kw)


def test_checkpoint_round_trip_rebuilds_identical_models(tmp_path):
    torch.manual_seed(0)
    g = small_generator()
    d = RaSeedDiscriminator(1, 8, 32)
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    g(torch.randn(1, 2, 4, 6)).sum().backward()
    opt.step()
    path = tmp_path / "m.pt"
    _save(path, g, d, g_optimizer=opt)
    ck = load_checkpoint(path, with_discriminator=True)
    x = torch.randn(2, 2, 4, 6)
    with torch.no_grad():
        assert torch.equal(ck.generator(x), g.eval()(x))
        hr = torch.randn(2, 1, 16, 24)
        assert torch.equal(ck.discriminator(hr), d(hr))
    assert ck.epoch == 3 and ck.config["n_features"] == 8 and ck.history == [{"epoch": 1, "val": 0.5}]
    assert ck.extra == {"model_id": "m"} and ck.norm.equals(norm_for(4, 6, 4))
    assert ck.raw["format_version"] == FORMAT_VERSION and ck.raw["g_optimizer"]["state"]
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temp file
    assert load_checkpoint(path).discriminator is None


def test_tampered_checkpoint_fails_clearly(tmp_path):
    path = tmp_path / "m.pt"
    _save(path, small_generator())
    raw = torch.load(path, weights_only=True)
    raw["generator"]["state_dict"]["extra_layer.weight"] = torch.zeros(1)
    torch.save(raw, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"(?s)extra\.pt.*weights do not match.*extra_layer"):
        load_checkpoint(tmp_path / "extra.pt")
    del raw["generator"]["state_dict"]["extra_layer.weight"]
    raw["generator"]["state_dict"].pop("tail.bias")
    torch.save(raw, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"(?s)missing\.pt.*tail\.bias"):
        load_checkpoint(tmp_path / "missing.pt")


def test_unknown_format_version_names_file_and_versions(tmp_path):
    path = tmp_path / "future.pt"
    _save(path, small_generator())
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, path)
    with pytest.raises(ValueError, match=r"future\.pt.*format_version 99.*version\(s\) 1"):
        load_checkpoint(path)

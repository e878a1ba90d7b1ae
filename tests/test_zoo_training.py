"""Every zoo architecture through the one trainer on sparse targets, the recipes' pieces (masked
L1, pooled targets for MDSR, relativistic losses, perceptual loss, network interpolation) and the
geometric self-ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from model.checkpoint import load_checkpoint
from model.config import ARCHITECTURES, TrainConfig
from model.data import SparseFieldDataset
from model.ensemble import TRANSFORMS, apply_transform, invert_transform, self_ensemble
from model.generator import RaSeedGenerator
from model.inference import InferenceEngine
from model.interpolation import interpolate_state_dicts
from model.losses import masked_l1, masked_pool, relativistic_d_loss, relativistic_g_loss
from model.synthetic import SyntheticSource, estimate_norm
from model.trainer import Trainer
from model.vgg import VGG19Features
from model.zoo import build_generator, recipe

HR = (32, 64)  # ESRGAN's discriminator needs HR sides >= 32
TRAIN = SyntheticSource(8, hr_shape=HR, upsampling=4, sensors_per_bin=4, seed=2)
VAL = SyntheticSource(4, hr_shape=HR, upsampling=4, sensors_per_bin=4, seed=2, offset=8)
NORM = estimate_norm(SyntheticSource(32, hr_shape=HR, upsampling=4, sensors_per_bin=4, seed=2))


def tiny(architecture: str, **kw) -> TrainConfig:
    base = dict(architecture=architecture, epochs=3, pretrain_epochs=1, batch_size=4, lr_generator=1e-3,
                checkpoint_every=1, n_features=8, n_res_blocks=1, device="cpu", seed=1)
    return TrainConfig(**{**base, **kw})


def fit(config: TrainConfig, workdir: Path):
    trainer = Trainer(config, SparseFieldDataset(TRAIN, NORM), SparseFieldDataset(VAL, NORM), NORM, workdir,
                      upsampling=4)
    return trainer, trainer.fit()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_trains_on_sparse_targets_and_reloads(architecture, tmp_path):
    trainer, result = fit(tiny(architecture), tmp_path)
    hist = result.history
    assert all(np.isfinite(h.val_content) for h in hist)
    assert hist[-1].train_content < hist[0].train_content
    adversarial = recipe(trainer.config).adversarial is not None
    assert hist[0].train_adversarial == 0.0  # the pixel-loss-only epoch
    assert (hist[-1].train_d != 0.0) == adversarial
    ckpt = load_checkpoint(result.kept_checkpoint)
    assert type(ckpt.generator) is type(trainer.generator)
    assert ckpt.extra["architecture"] == architecture
    x = torch.randn(2, 2, 8, 16)
    assert ckpt.generator(x).shape == (2, 1, 32, 64)
    # the inference engine takes any zoo generator unchanged
    engine = InferenceEngine(ckpt.generator, ckpt.norm)
    lr_mean = np.where(np.arange(128).reshape(8, 16) % 3 == 0, 20.0, np.nan)[None]
    out = engine.predict(lr_mean, np.isfinite(lr_mean).astype(np.int16))
    assert out.shape == (1, *HR) and np.isfinite(out).all()


def test_paper_defaults_fill_the_recipe():
    r = recipe(TrainConfig(architecture="edsr"))
    assert (r.n_features, r.n_res_blocks, r.content_loss) == (256, 32, "l1")
    assert build_generator(TrainConfig(architecture="edsr"), 2).constructor_args()["res_scale"] == 0.1
    assert build_generator(TrainConfig(architecture="edsr_baseline"), 2).constructor_args()["res_scale"] == 1.0
    r = recipe(TrainConfig(architecture="esrgan", epochs=10, pretrain_epochs=2))
    assert (r.n_res_blocks, r.adversarial, r.adversarial_weight, r.interpolation_alpha) == (23, "relativistic", 5e-3, 0.8)
    assert recipe(TrainConfig(architecture="esrgan", perceptual_weight=1.0, vgg_weights="v.pth")).content_weight == 1e-2
    r = recipe(TrainConfig())
    assert (r.architecture, r.n_features, r.n_res_blocks, r.content_loss, r.adversarial_weight) == (
        "raseedgan", 64, 16, "mse", 1e-3)
    assert recipe(TrainConfig(architecture="srresnet", content_loss="l1")).content_loss == "l1"
    assert build_generator(TrainConfig(architecture="mdsr"), 8).scales == (2, 4, 8)


def test_esrgan_interpolates_only_with_a_psnr_model_and_a_gan_phase():
    assert recipe(tiny("esrgan")).interpolation_alpha == 0.8
    assert recipe(tiny("esrgan", pretrain_epochs=0)).interpolation_alpha is None
    assert recipe(tiny("esrgan", epochs=1, pretrain_epochs=1)).interpolation_alpha is None
    r = recipe(tiny("esrgan"))
    assert (r.perceptual_criterion, r.perceptual_before_activation) == ("l1", True)
    r = recipe(tiny("srgan"))
    assert (r.perceptual_criterion, r.perceptual_before_activation) == ("mse", False)


def test_a_discriminator_too_big_for_the_domain_is_refused_up_front(tmp_path):
    src = SyntheticSource(4, hr_shape=(16, 32), upsampling=4, sensors_per_bin=4, seed=2)
    norm = estimate_norm(src)
    with pytest.raises(ValueError, match=r"'esrgan'.*at least 32×32.*\(16, 32\)"):
        Trainer(tiny("esrgan"), SparseFieldDataset(src, norm), SparseFieldDataset(src, norm), norm, tmp_path,
                upsampling=4)


def test_esrgan_publishes_the_network_interpolation(tmp_path):
    _, result = fit(tiny("esrgan", interpolation_alpha=0.3), tmp_path)
    assert result.interpolation_alpha == 0.3
    psnr = torch.load(tmp_path / "psnr.pt", weights_only=True)
    gan = torch.load(tmp_path / "gan.pt", weights_only=True)
    kept = load_checkpoint(result.kept_checkpoint)
    assert psnr["epoch"] == 1 and gan["epoch"] == result.kept_epoch > 1
    assert kept.extra["interpolation"] == {"alpha": 0.3, "psnr_epoch": 1, "gan_epoch": result.kept_epoch}
    for name, w in kept.generator.state_dict().items():
        p, g = psnr["generator"]["state_dict"][name], gan["generator"]["state_dict"][name]
        torch.testing.assert_close(w, 0.7 * p + 0.3 * g)
    assert not torch.equal(psnr["generator"]["state_dict"]["conv_first.weight"],
                           gan["generator"]["state_dict"]["conv_first.weight"])


def test_interpolation_endpoints_and_mismatch():
    a = {"w": torch.zeros(3), "n": torch.tensor(1)}
    b = {"w": torch.ones(3), "n": torch.tensor(7)}
    assert torch.equal(interpolate_state_dicts(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolate_state_dicts(a, b, 1.0)["w"], b["w"])
    assert interpolate_state_dicts(a, b, 0.5)["n"].item() == 7
    with pytest.raises(ValueError, match="alpha"):
        interpolate_state_dicts(a, b, 1.5)
    with pytest.raises(ValueError, match="differ"):
        interpolate_state_dicts(a, {"w": torch.ones(3)}, 0.5)


@pytest.mark.parametrize("batches", [None, 1])
def test_mdsr_trains_every_head_and_the_published_one_first(batches, tmp_path):
    cfg = tiny("mdsr", pretrain_epochs=0, epochs=1 if batches else 3, max_batches_per_epoch=batches)
    trainer, _ = fit(cfg, tmp_path)
    assert trainer.scales[0] == trainer.upsampling == 4
    torch.manual_seed(cfg.seed)
    fresh = build_generator(trainer.config, 4).state_dict()  # the trainer's initial weights
    trained = trainer.generator.state_dict()
    for scale in trainer.generator.scales:
        head = [k for k in trained if k.startswith((f"pre_process.{scale}.", f"upsample.{scale}."))]
        assert head, f"no parameters for the ×{scale} head"
        changed = any(not torch.equal(trained[k], fresh[k]) for k in head)
        # one step in all trains the published ×4 head; 6 steps train both heads
        assert changed == (scale == 4 or batches is None), f"×{scale} head"


def test_masked_l1_and_pooled_targets():
    pred = torch.tensor([[[[1.0, 5.0], [0.0, 0.0]]]])
    target = torch.tensor([[[[2.0, 1.0], [9.0, 9.0]]]])
    flag = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert masked_l1(pred, target, flag).item() == pytest.approx((1 + 9) / 2)
    t = torch.zeros(1, 1, 4, 4)
    f = torch.zeros(1, 1, 4, 4)
    t[0, 0, 0, 0], f[0, 0, 0, 0] = 3.0, 1.0
    t[0, 0, 1, 1], f[0, 0, 1, 1] = 5.0, 1.0
    t[0, 0, 3, 3], f[0, 0, 3, 3] = -1.0, 1.0
    t[0, 0, 2, 0] = 100.0  # unflagged: must not count
    pooled, pf = masked_pool(t, f, 2)
    assert pf.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]
    assert pooled.flatten().tolist() == [4.0, 0.0, 0.0, -1.0]
    with pytest.raises(ValueError, match="divisible"):
        masked_pool(t[..., :3], f[..., :3], 2)


def test_relativistic_losses_reward_the_right_side():
    real, fake = torch.full((4, 1), 5.0), torch.full((4, 1), -5.0)
    d_good, _ = relativistic_d_loss(real, fake)
    d_bad, _ = relativistic_d_loss(fake, real)
    assert d_good.item() < 1e-3 < d_bad.item()
    assert relativistic_g_loss(real, fake).item() > 5 > relativistic_g_loss(fake, real).item()
    # the G loss has no gradient through the real side
    r = real.clone().requires_grad_(True)
    f = fake.clone().requires_grad_(True)
    relativistic_g_loss(r, f).backward()
    assert r.grad is None and f.grad is not None


def test_perceptual_loss_needs_a_weights_file_and_trains_with_one(tmp_path):
    with pytest.raises(ValidationError, match="vgg_weights"):
        TrainConfig(perceptual_weight=1.0)
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pth"):
        fit(tiny("srgan", perceptual_weight=1.0, vgg_weights=str(missing), vgg_layer="conv2_2"), tmp_path / "a")
    weights = tmp_path / "vgg19.pth"
    torch.save(VGG19Features("conv2_2").state_dict(), weights)
    _, result = fit(tiny("srgan", perceptual_weight=1.0, vgg_weights=str(weights), vgg_layer="conv2_2"),
                    tmp_path / "b")
    assert result.history[0].train_perceptual == 0.0  # pixel-only pretraining
    assert result.history[-1].train_perceptual > 0.0


def _asymmetric_model() -> RaSeedGenerator:
    torch.manual_seed(0)
    return RaSeedGenerator(2, 1, upsampling=2, n_features=4, n_res_blocks=1, upsample_features=16).eval()


def test_transforms_are_inverted_exactly():
    x = torch.randn(2, 3, 5, 7)
    for t in TRANSFORMS:
        assert torch.equal(invert_transform(apply_transform(x, t), t), x)
    assert len({tuple(apply_transform(x, t).flatten()[:12].tolist()) for t in TRANSFORMS}) == 8


@torch.no_grad()
def test_self_ensemble_is_equivariant_and_batch_preserving():
    g = _asymmetric_model()
    x = torch.randn(3, 2, 6, 9)
    ens = self_ensemble(g, x)
    assert ens.shape == (3, 1, 12, 18)
    # one item alone gives the same as inside the batch (the batch is never mixed)
    torch.testing.assert_close(self_ensemble(g, x[1:2]), ens[1:2], rtol=1e-5, atol=1e-6)
    for t in TRANSFORMS:
        torch.testing.assert_close(self_ensemble(g, apply_transform(x, t)), apply_transform(ens, t),
                                   rtol=1e-5, atol=1e-6)
    # the model alone is not equivariant: the test above is not vacuous
    flip = (False, False, True)
    assert (g(apply_transform(x, flip)) - apply_transform(g(x), flip)).abs().max() > 1e-3


def test_engine_self_ensemble_option():
    g = _asymmetric_model()
    lr_mean = np.where(np.arange(6 * 9).reshape(6, 9) % 2 == 0, 15.0, np.nan)[None]
    count = np.isfinite(lr_mean).astype(np.int16)
    from model.data import Normalisation

    norm = Normalisation(lr_mean=np.full((6, 9), 15.0), lr_std=np.ones((6, 9)),
                         hr_mean=np.full((12, 18), 15.0), hr_std=np.ones((12, 18)))
    plain = InferenceEngine(g, norm).predict(lr_mean, count)
    ens = InferenceEngine(g, norm, self_ensemble=True).predict(lr_mean, count)
    assert ens.shape == plain.shape == (1, 12, 18)
    assert not np.allclose(ens, plain)
    x = InferenceEngine(g, norm).prepare(lr_mean, count)
    with torch.no_grad():
        expected = self_ensemble(g, x)[0, 0].numpy() + 15.0
    np.testing.assert_allclose(ens[0], expected, rtol=1e-5, atol=1e-5)

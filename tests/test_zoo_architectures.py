"""The SR architecture zoo: SRResNet/SRGAN, EDSR/MDSR, ESRGAN, the autoencoder, VGG19 features.

Tiny configurations for every forward pass; the papers' full-size models are only built (on the
meta device: no memory, no initialisation cost) to count their parameters.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from model.autoencoder import AutoencoderUpscaler
from model.checkpoint import load_checkpoint, save_checkpoint
from model.data import Normalisation
from model.edsr import EDSR, EDSR_BASELINE, EDSR_FULL, MDSR, MDSR_PAPER
from model.generator import RaSeedGenerator, count_parameters
from model.registry import MODEL_CLASSES
from model.rrdbnet import RelativisticDiscriminator, RRDBNet
from model.srresnet import SRGANDiscriminator, SRResNet
from model.vgg import VGG19_LAYERS, VGG19Features, load_vgg19_features

LR_SIZES = [(5, 7), (6, 3)]

# tiny generators by name: factory(upsampling) and the factors each supports
TINY_GENERATORS = {
    "SRResNet": (lambda s: SRResNet(2, 1, s, n_features=8, n_res_blocks=2), (2, 4, 8)),
    "EDSR": (lambda s: EDSR(2, 1, s, n_features=8, n_res_blocks=2, res_scale=0.1), (2, 3, 4, 8)),
    "RRDBNet": (lambda s: RRDBNet(2, 1, s, n_features=8, n_blocks=1, growth=4), (2, 4, 8)),
    "AutoencoderUpscaler": (lambda s: AutoencoderUpscaler(2, 1, s, n_features=4, depth=2), (2, 4, 8)),
    "MDSR": (lambda s: MDSR(2, 1, scales=(2, 3, 4, 8), upsampling=s, n_features=8, n_res_blocks=1),
             (2, 3, 4, 8)),
}
GENERATOR_CASES = [(name, s) for name, (_, scales) in TINY_GENERATORS.items() for s in scales]


def tiny(name: str, s: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return TINY_GENERATORS[name][0](s)


def on_meta(cls, *args, **kwargs) -> int:
    """Parameter count of a model built on the meta device (no allocation)."""
    with torch.device("meta"):
        return count_parameters(cls(*args, **kwargs))


def norm_for(h: int, w: int, s: int) -> Normalisation:
    rng = np.random.default_rng(0)
    return Normalisation(
        lr_mean=rng.normal(15, 1, (h, w)), lr_std=rng.uniform(0.5, 2, (h, w)),
        hr_mean=rng.normal(15, 1, (h * s, w * s)), hr_std=rng.uniform(0.5, 2, (h * s, w * s)),
    )


# ---------------------------------------------------------------- generators: shapes and args
@pytest.mark.parametrize(("name", "s"), GENERATOR_CASES)
def test_generator_output_shape_and_args(name, s):
    g = tiny(name, s)
    for h, w in LR_SIZES:
        y = g(torch.randn(2, 2, h, w))
        assert y.shape == (2, 1, h * s, w * s)
    assert (g.in_channels, g.out_channels, g.upsampling) == (2, 1, s)
    args = g.constructor_args()
    rebuilt = type(g)(**json.loads(json.dumps(args)))  # the args survive JSON (configs, manifests)
    assert rebuilt.constructor_args() == args
    assert math.isfinite(g.receptive_field_lr()) and g.receptive_field_lr() > 0
    assert MODEL_CLASSES[name] is type(g)
    with pytest.raises(ValueError, match=r"\(B, 2, h, w\)"):
        g(torch.zeros(1, 3, 4, 4))


@pytest.mark.parametrize("hw", [(5, 7), (1, 3), (9, 6), (13, 11), (8, 16)])
@pytest.mark.parametrize("depth", [1, 3])
def test_autoencoder_takes_any_lr_size(hw, depth):
    torch.manual_seed(0)
    g = AutoencoderUpscaler(2, 1, 4, n_features=4, depth=depth).eval()
    x = torch.randn(1, 2, *hw)
    y = g(x)
    assert y.shape == (1, 1, hw[0] * 4, hw[1] * 4)
    # the output is the crop of the output for the explicitly zero-padded input
    m = 2**depth
    padded = torch.nn.functional.pad(x, (0, -hw[1] % m, 0, -hw[0] % m))
    with torch.no_grad():
        torch.testing.assert_close(y.detach(), g(padded)[..., : hw[0] * 4, : hw[1] * 4])


def test_mdsr_scales():
    g = tiny("MDSR", 4).eval()
    assert g.scales == (2, 3, 4, 8) and g.constructor_args()["scales"] == [2, 3, 4, 8]
    x = torch.randn(2, 2, 5, 7)
    with torch.no_grad():
        for s in g.scales:
            assert g(x, scale=s).shape == (2, 1, 5 * s, 7 * s)
        assert torch.equal(g(x), g(x, scale=4))
    for bad in (5, 16, True):
        with pytest.raises(ValueError, match="scale"):
            g(x, scale=bad)
    assert set(g.pre_process) == set(g.upsample) == {"2", "3", "4", "8"}


@pytest.mark.parametrize(
    ("cls", "kwargs", "param"),
    [
        (SRResNet, {"upsampling": 3}, "upsampling"),
        (SRResNet, {"upsampling": 16}, "upsampling"),
        (SRResNet, {"n_res_blocks": -1}, "n_res_blocks"),
        (SRResNet, {"in_channels": 0}, "in_channels"),
        (EDSR, {"upsampling": 6}, "upsampling"),
        (EDSR, {"upsampling": 1}, "upsampling"),
        (EDSR, {"res_scale": 0}, "res_scale"),
        (EDSR, {"n_features": 2.5}, "n_features"),
        (MDSR, {"scales": (2, 4), "upsampling": 8}, "upsampling"),
        (MDSR, {"scales": (2, 5)}, "scales"),
        (MDSR, {"scales": (2, 2, 8)}, "scales"),
        (MDSR, {"scales": ()}, "scales"),
        (RRDBNet, {"upsampling": 3}, "upsampling"),
        (RRDBNet, {"growth": 0}, "growth"),
        (AutoencoderUpscaler, {"upsampling": 3}, "upsampling"),
        (AutoencoderUpscaler, {"depth": 0}, "depth"),
        (SRGANDiscriminator, {"dense_features": 0}, "dense_features"),
        (RelativisticDiscriminator, {"n_features": 0}, "n_features"),
    ],
)
def test_constructor_arguments_are_validated(cls, kwargs, param):
    with pytest.raises(ValueError, match=param):
        cls(**kwargs)


def test_unsupported_upsampling_message_lists_the_allowed_values():
    with pytest.raises(ValueError, match=r"upsampling must be one of \(2, 3, 4, 8\), got upsampling=5"):
        EDSR(upsampling=5)
    with pytest.raises(ValueError, match=r"upsampling must be one of \(2, 4, 8\)"):
        RRDBNet(upsampling=3)


def _measured_radius(g: torch.nn.Module, n: int) -> float:
    """Largest distance (LR cells) from the centre cell of an input cell whose gradient reaches
    the HR pixels of that centre cell."""
    x = torch.randn(1, g.in_channels, n, n, requires_grad=True)
    y = g(x)
    s, c = g.upsampling, n // 2
    y[0, 0, c * s:(c + 1) * s, c * s:(c + 1) * s].sum().backward()
    reached = (x.grad[0].abs().sum(0) > 0).nonzero().float()
    return (reached - c).abs().max().item()


@pytest.mark.parametrize("name", sorted(TINY_GENERATORS))
def test_receptive_field_estimate_bounds_the_measured_one(name):
    g = tiny(name, 2).eval()
    radius = g.receptive_field_lr()
    measured = _measured_radius(g, n=2 * math.ceil(radius) + 8)  # the field never hits the edge
    assert measured <= radius + 1  # an upper estimate, up to sub-cell offsets
    assert measured >= 0.8 * radius  # and not a loose one


# ---------------------------------------------------------------- discriminators
def test_srgan_discriminator_logits():
    torch.manual_seed(0)
    d = SRGANDiscriminator(1, n_features=8, dense_features=16)
    for shape in ((20, 28), (40, 24), (17, 33)):
        assert d(torch.randn(2, 1, *shape)).shape == (2, 1)
    d.eval()
    assert d(torch.randn(1, 1, 8, 8)).shape == (1, 1)
    assert d(torch.full((2, 1, 20, 20), 1e4)).isfinite().all()  # logits, no saturating sigmoid
    assert SRGANDiscriminator(**d.constructor_args()).constructor_args() == d.constructor_args()
    assert MODEL_CLASSES["SRGANDiscriminator"] is SRGANDiscriminator


def test_relativistic_discriminator_logits():
    torch.manual_seed(0)
    d = RelativisticDiscriminator(1, n_features=4)
    for shape in ((32, 48), (64, 40), (37, 90)):
        assert d(torch.randn(2, 1, *shape)).shape == (2, 1)
    assert d.head[1].in_features == 8 * 4  # pooled 8F features, not a fixed 128×128 flatten
    with pytest.raises(ValueError, match="32"):
        d(torch.randn(2, 1, 16, 64))
    assert RelativisticDiscriminator(**d.constructor_args()).constructor_args() == d.constructor_args()
    assert MODEL_CLASSES["RelativisticDiscriminator"] is RelativisticDiscriminator


# ---------------------------------------------------------------- parameter counts vs the papers
def test_srresnet_parameter_count():
    # SRResNet ×4, 3 → 3 channels, F = 64, B = 16 (convolutions before BN have no bias):
    #   head conv9×9 3→64:            9·9·3·64 + 64 = 15,616;  PReLU(64): 64        →    15,680
    #   residual block: 2 × conv3×3 64→64 no bias (36,864) + 2 × BN(64) (128) + PReLU (64)
    #                   = 73,728 + 256 + 64 = 74,048;  × 16                          → 1,184,768
    #   body conv3×3 no bias + BN:    36,864 + 128                                   →    36,992
    #   upsampling stage: conv3×3 64→256 (147,456 + 256) + PReLU(64) = 147,776; × 2  →   295,552
    #   tail conv9×9 64→3:            9·9·64·3 + 3                                   →    15,555
    #   total                                                                         1,548,547
    # (≈ 1.55 M as usually quoted; with biases before BN it would be 1,550,659.)
    n = on_meta(SRResNet, 3, 3, 4)
    print(f"SRResNet x4 (3 ch): {n:,}")
    assert n == 15_680 + 16 * 74_048 + 36_992 + 2 * 147_776 + 15_555 == 1_548_547


def test_edsr_parameter_counts():
    # Baseline ×2: EDSR-PyTorch's published "1.37 M". By hand (3×3 convolutions, 64 features,
    # 16 blocks without batch norm; k·k·c·d weights + d biases): head 3→64, 16 × two 64→64,
    # the body's last 64→64, one 64→256 before PixelShuffle(2), tail 64→3. Its MeanShift layers
    # are frozen 1×1 convolutions (requires_grad False, not counted), so leaving them out changes nothing.
    conv = lambda c, d: 9 * c * d + d  # noqa: E731
    by_hand = conv(3, 64) + 16 * 2 * conv(64, 64) + conv(64, 64) + conv(64, 256) + conv(64, 3)
    assert by_hand == 1_369_859 and on_meta(EDSR, 3, 3, 2, **EDSR_BASELINE) == by_hand
    assert on_meta(EDSR.baseline, in_channels=3, out_channels=3, upsampling=2) == 1_369_859
    # Full EDSR: the paper's 43 M (×4) and 40.7 M (×2).
    full4 = on_meta(EDSR, 3, 3, 4, **EDSR_FULL)
    full2 = on_meta(EDSR, 3, 3, 2, **EDSR_FULL)
    print(f"EDSR full x4: {full4:,}  x2: {full2:,}")
    assert full4 == 43_089_923 and full4 == pytest.approx(43e6, rel=0.01)
    assert full2 == 40_729_603 and full2 == pytest.approx(40.7e6, rel=0.001)
    # EDSR.full() uses the residual scaling 0.1, EDSR.baseline() none
    with torch.device("meta"):
        assert EDSR.full().constructor_args()["res_scale"] == 0.1
        assert EDSR.baseline().constructor_args()["res_scale"] == 1.0


def test_mdsr_parameter_count():
    # The paper's MDSR (scales 2, 3, 4; 80 blocks × 64): 8.0 M in the paper's table (rounded).
    # head 1,792 + 3 × pre-processing (2 blocks of two conv5×5: 409,856) + body 80 × 73,856
    # + conv 36,928 + upsamplers (×2 147,712, ×3 332,352, ×4 295,424) + tail 1,731 = 7,953,987
    n = on_meta(MDSR, 3, 3, **MDSR_PAPER)
    print(f"MDSR (paper): {n:,}")
    assert n == 7_953_987 and n == pytest.approx(8.0e6, rel=0.03)


def test_rrdbnet_parameter_count():
    # ESRGAN's published RRDB_ESRGAN_x4 model: 16,697,987 parameters (built for real: its
    # scaled initialisation is slower on the meta device than on the CPU)
    assert count_parameters(RRDBNet(3, 3, 4)) == 16_697_987


def test_seedfield_defaults_build():
    # seedfield's default 2 → 1 channels at ×8 (the counts quoted in the report)
    counts = {
        "SRResNet": on_meta(SRResNet, 2, 1, 8),
        "EDSR baseline": on_meta(EDSR, 2, 1, 8, **EDSR_BASELINE),
        "EDSR full": on_meta(EDSR, 2, 1, 8, **EDSR_FULL),
        "MDSR (2,4,8)": on_meta(MDSR, 2, 1, n_res_blocks=80),
        "RRDBNet": on_meta(RRDBNet, 2, 1, 8),
        "AutoencoderUpscaler": on_meta(AutoencoderUpscaler, 2, 1, 8),
        "RaSeedGenerator": on_meta(RaSeedGenerator, 2, 1, 8),
    }
    assert counts == {  # quoted in docs/model-zoo.md
        "SRResNet": 1_680_769, "EDSR baseline": 1_663_553, "EDSR full": 45_443_329,
        "MDSR (2,4,8)": 8_063_041, "RRDBNet": 16_733_185, "AutoencoderUpscaler": 2_797_249,
        "RaSeedGenerator": 1_678_657,
    }


# ---------------------------------------------------------------- checkpoints
def _round_trip(tmp_path, g, d=None):
    path = tmp_path / "m.pt"
    save_checkpoint(path, generator=g, discriminator=d, epoch=1, norm=norm_for(3, 4, 2),
                    config={}, history=[])
    return load_checkpoint(path, with_discriminator=d is not None)


@pytest.mark.parametrize("name", sorted(TINY_GENERATORS))
def test_generator_checkpoint_round_trip(tmp_path, name):
    g = tiny(name, 4)
    g.train()
    g(torch.randn(3, 2, 5, 7))  # moves batch-norm running statistics away from their defaults
    g.eval()
    ck = _round_trip(tmp_path, g)
    assert type(ck.generator) is type(g)
    assert ck.generator.constructor_args() == g.constructor_args()
    x = torch.randn(2, 2, 5, 7)
    with torch.no_grad():
        assert torch.equal(ck.generator(x), g(x))
        if isinstance(g, MDSR):
            assert torch.equal(ck.generator(x, scale=3), g(x, scale=3))


@pytest.mark.parametrize(
    "make_d",
    [lambda: SRGANDiscriminator(1, 8, 16), lambda: RelativisticDiscriminator(1, 4)],
    ids=["SRGANDiscriminator", "RelativisticDiscriminator"],
)
def test_discriminator_checkpoint_round_trip(tmp_path, make_d):
    torch.manual_seed(0)
    g, d = SRResNet(2, 1, 4, 8, 1), make_d()
    d.train()
    d(torch.randn(3, 1, 40, 36))
    d.eval()
    ck = _round_trip(tmp_path, g, d)
    assert type(ck.discriminator) is type(d)
    assert ck.discriminator.constructor_args() == d.constructor_args()
    hr = torch.randn(2, 1, 40, 36)
    with torch.no_grad():
        assert torch.equal(ck.discriminator(hr), d(hr))


# ---------------------------------------------------------------- batch norm in eval mode
def test_srresnet_eval_is_batch_independent():
    g = tiny("SRResNet", 4)
    g.train()
    for _ in range(3):
        g(torch.randn(4, 2, 6, 5))
    g.eval()
    x = torch.randn(3, 2, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(g(x[:1]), g(x)[:1], rtol=0, atol=1e-5)
    g.train()
    with torch.no_grad():  # whereas in training mode the batch statistics couple the samples
        assert not torch.allclose(g(x[:1]), g(x)[:1], atol=1e-5)


# ---------------------------------------------------------------- VGG19 features
@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A torchvision-style vgg19 state dict of random weights (with fake classifier keys)."""
    torch.manual_seed(0)
    src = VGG19Features("conv5_4")
    state = dict(src.state_dict())
    state["classifier.0.weight"] = torch.zeros(4, 4)  # stand-ins: the loader must ignore them
    state["classifier.0.bias"] = torch.zeros(4)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-test.pth"
    torch.save(state, path)
    return path, src


def test_vgg19_naming_matches_torchvision():
    v = VGG19Features("conv5_4")
    assert len(v.features) == 36  # indices 0…35: up to the ReLU after conv5_4
    keys = list(v.state_dict())
    assert keys[0] == "features.0.weight" and keys[-1] == "features.34.bias" and len(keys) == 32
    assert VGG19_LAYERS["conv2_2"] == 7 and VGG19_LAYERS["conv3_4"] == 16
    assert VGG19_LAYERS["conv4_4"] == 25 and VGG19_LAYERS["conv5_4"] == 34
    assert isinstance(v.features[35], torch.nn.ReLU)
    assert len(VGG19Features("conv2_2").features) == 9
    assert len(VGG19Features("conv5_4", before_activation=True).features) == 35
    with pytest.raises(ValueError, match="layer"):
        VGG19Features("conv6_1")


def test_vgg19_loads_a_torchvision_state_dict(vgg_file):
    path, src = vgg_file
    v = load_vgg19_features(path)
    assert not v.training and not any(p.requires_grad for p in v.parameters())
    x = torch.randn(2, 1, 32, 48, requires_grad=True)
    y = v(x)
    assert y.shape == (2, 512, 2, 3)
    with torch.no_grad():
        assert torch.equal(y, src(x.expand(-1, 3, -1, -1)))
    y.square().mean().backward()  # gradients reach the input (perceptual loss) …
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in v.parameters())  # … but not the frozen weights
    shallow = load_vgg19_features(path, layer="conv2_2")  # the rest of the file is ignored
    assert shallow(torch.randn(1, 3, 8, 8)).shape == (1, 128, 4, 4)


def test_vgg19_loads_a_features_only_state_dict(tmp_path, vgg_file):
    _, src = vgg_file
    path = tmp_path / "features.pth"
    torch.save({k: v for k, v in src.state_dict().items() if k.startswith("features.")}, path)
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(load_vgg19_features(path, layer="conv3_4")(x),
                       src.features[:18](x))


def test_vgg19_missing_file_never_downloads(tmp_path):
    path = tmp_path / "nowhere" / "vgg19.pth"
    with pytest.raises(FileNotFoundError, match=r"(?s)nowhere.*never downloads.*vgg19-dcbb9e9d\.pth"):
        load_vgg19_features(path)


def test_vgg19_bad_files_name_the_file(tmp_path, vgg_file):
    _, src = vgg_file
    state = dict(src.state_dict())
    state["features.2.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(state, tmp_path / "wrong_shape.pth")
    with pytest.raises(ValueError, match=r"(?s)wrong_shape\.pth.*features\.2\.weight"):
        load_vgg19_features(tmp_path / "wrong_shape.pth")
    state = dict(src.state_dict())
    del state["features.5.bias"], state["features.7.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"(?s)missing\.pth.*'features\.5\.bias'"):
        load_vgg19_features(tmp_path / "missing.pth", layer="conv2_2")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth"):
        load_vgg19_features(tmp_path / "list.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"garbage\.pth"):
        load_vgg19_features(tmp_path / "garbage.pth")

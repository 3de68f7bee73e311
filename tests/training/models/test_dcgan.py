"""ganserve.training.models.dcgan: the DCGAN generator and discriminator follow the paper's rules."""

import pytest
import torch
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganserve.training.models.layers import dcgan_base_size


@pytest.mark.parametrize("size,channels", [(8, 1), (16, 3), (28, 1), (32, 3), (56, 1), (64, 3)])
@pytest.mark.parametrize("d_norm,sn", [("batch", False), ("layer", True), ("none", False)])
def test_shapes(size, channels, d_norm, sn):
    G = DCGANGenerator(image_size=size, channels=channels, latent_dim=12, width=8)
    D = DCGANDiscriminator(image_size=size, channels=channels, width=8, norm=d_norm, spectral_norm=sn)
    x = G(torch.randn(3, 12))
    assert x.shape == (3, channels, size, size)
    assert x.abs().max() <= 1.0  # tanh output
    logits = D(x)
    assert logits.shape == (3,)
    assert logits.dtype == torch.float32


def test_base_sizes():
    assert dcgan_base_size(28) == (7, 2)
    assert dcgan_base_size(64) == (4, 4)
    with pytest.raises(UsageError, match="4\\*2\\^k or 7\\*2\\^k"):
        dcgan_base_size(30)


def test_paper_architecture_rules():
    G = DCGANGenerator(image_size=64, channels=3, latent_dim=100, width=64)
    D = DCGANDiscriminator(image_size=64, channels=3, width=64)
    g_layers = list(G.net)
    # G: transposed convolutions only, ReLU hidden, tanh out, BatchNorm everywhere except the output
    assert all(not isinstance(m, (nn.Conv2d, nn.Linear, nn.MaxPool2d)) for m in G.modules())
    assert isinstance(g_layers[-1], nn.Tanh) and isinstance(g_layers[-2], nn.ConvTranspose2d)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g_layers) == sum(
        isinstance(m, nn.ConvTranspose2d) for m in g_layers) - 1
    assert all(isinstance(m, (nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU, nn.Tanh)) for m in g_layers)
    # D: strided convolutions, no BatchNorm right after the input layer, LeakyReLU(0.2), no pooling
    d_layers = list(D.features)
    assert isinstance(d_layers[0], nn.Conv2d) and d_layers[0].stride == (2, 2)
    assert isinstance(d_layers[1], nn.LeakyReLU) and d_layers[1].negative_slope == 0.2
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Sigmoid)) for m in D.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d_layers) == 3  # 64 -> 32 (no BN) -> 16 -> 8 -> 4


def test_init_is_normal_002():
    G = DCGANGenerator(image_size=64, channels=3, latent_dim=100, width=64)
    w = torch.cat([m.weight.detach().flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(float(w.mean())) < 1e-3
    assert float(w.std()) == pytest.approx(0.02, rel=0.05)


def test_discriminator_conditioning_concatenates_at_base_resolution():
    D = DCGANDiscriminator(image_size=64, channels=3, width=8, cond_dim=5)
    out = D(torch.randn(2, 3, 64, 64), torch.randn(2, 5))
    assert out.shape == (2,)


def test_boundary_shape_check():
    G = DCGANGenerator(image_size=28, channels=1, latent_dim=10, width=64)
    with pytest.raises(ValueError, match="expected shape"):
        G(torch.randn(2, 11))


def test_z_norm_makes_the_generator_depend_on_the_direction_of_z_only():
    torch.manual_seed(0)
    G = DCGANGenerator(image_size=28, channels=1, latent_dim=100, width=8, z_norm=True).eval()
    z = torch.randn(4, 100)
    # a z shortened (as truncation shortens it) gives the image of its direction
    torch.testing.assert_close(G(0.28 * z), G(z), atol=1e-5, rtol=0)
    plain = DCGANGenerator(image_size=28, channels=1, latent_dim=100, width=8).eval()
    plain.load_state_dict(G.state_dict())
    assert (plain(0.28 * z) - plain(z)).abs().max() > 1e-3  # without it, the length of z matters


def test_z_norm_leaves_the_conditioning_vector_alone():
    torch.manual_seed(0)
    G = DCGANGenerator(image_size=8, channels=1, latent_dim=6, width=8, cond_dim=3, z_norm=True).eval()
    z, c = torch.randn(2, 6), torch.randn(2, 3)
    torch.testing.assert_close(G(torch.cat([3 * z, c], 1)), G(torch.cat([z, c], 1)), atol=1e-5, rtol=0)
    assert (G(torch.cat([z, 3 * c], 1)) - G(torch.cat([z, c], 1))).abs().max() > 1e-3


def test_truncation_anchors_read_a_short_z_as_a_pull_towards_the_nearest_typical_sample():
    torch.manual_seed(0)
    G = DCGANGenerator(image_size=8, channels=1, latent_dim=16, width=8, z_norm=True).eval()
    anchors = torch.randn(2, 16)
    with torch.no_grad():
        z = torch.randn(1, 16)
        z = z * 4 / z.norm(dim=1, keepdim=True)   # length sqrt(16): the shell N(0, I) draws from
        plain, target = G(z), G(anchors[1:])
        # anchor 1 is the nearest: its image is z's own; anchor 0's is far away
        G.set_truncation_anchors(anchors, torch.cat([torch.ones_like(plain), plain]), radius=0.75)
        torch.testing.assert_close(G(z), plain)   # untruncated z: the same image as without anchors
        torch.testing.assert_close(G(1e-3 * z), target, atol=5e-3, rtol=0)  # (almost) all the way to the anchor
        half = G(0.375 * z)  # length 0.375 of the shell: psi = 0.5, between the two
        assert (half - plain).abs().mean() > 1e-3 and (half - target).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="need z_norm"):
        DCGANGenerator(image_size=8, channels=1, latent_dim=16, width=8).set_truncation_anchors(
            anchors, plain, radius=0.75)

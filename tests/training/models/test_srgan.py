"""ganserve.training.models.srgan: the SRResNet generator and the SRGAN discriminator (Ledig et al. 2017)."""

import pytest
import torch
from torch import nn

from ganserve.training.models.srgan import SRDiscriminator, SRResNet


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("h,w", [(7, 7), (13, 5), (16, 24)])
def test_srresnet_shapes_at_several_scales(scale, h, w):
    G = SRResNet(width=16, scale=scale, blocks=2)  # srresnet-tiny's trunk at each scale
    sr = G(torch.rand(2, 3, h, w))
    assert sr.shape == (2, 3, scale * h, scale * w)
    G.eval()
    with torch.no_grad():
        out = G(torch.rand(1, 3, h, w))
    assert out.min() >= 0 and out.max() <= 1  # eval (exported) output is clamped to [0, 1]


def test_srresnet_follows_the_paper():
    G = SRResNet(width=64, scale=4, blocks=16)  # the paper's (and the srresnet-x4 preset's) size
    assert G.head[0].kernel_size == (9, 9) and isinstance(G.head[1], nn.PReLU)
    assert G.tail.kernel_size == (9, 9)
    blocks = [m for m in G.trunk if m.__class__.__name__ == "ResidualBlock"]
    assert len(blocks) == 16
    assert [type(m) for m in blocks[0].body] == [nn.Conv2d, nn.BatchNorm2d, nn.PReLU, nn.Conv2d, nn.BatchNorm2d]
    assert sum(isinstance(m, nn.PixelShuffle) for m in G.modules()) == 2  # x4 = two x2 stages
    assert all(m.upscale_factor == 2 for m in G.modules() if isinstance(m, nn.PixelShuffle))


def test_discriminator_vgg_style_returns_logits_and_features():
    D = SRDiscriminator(image_size=96, width=8)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and [c.stride[0] for c in convs] == [1, 2] * 4
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(D.head[-1], nn.Linear) and D.head[-1].out_features == 1
    logits, feats = D(torch.rand(3, 3, 96, 96), True)
    assert logits.shape == (3,) and len(feats) == 4 and feats[-1].shape == (3, 64, 6, 6)
    with pytest.raises(ValueError, match="expected shape"):
        D(torch.rand(1, 3, 64, 64))

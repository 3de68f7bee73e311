"""SRResNet generator and SRGAN discriminator (Ledig et al. 2017, "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network").

Generator: 9x9 conv + PReLU head; ``blocks`` residual blocks (conv3x3-BN-PReLU-conv3x3-BN, identity
skip); conv3x3-BN and a global skip from the head; log2(scale) upsampling stages (conv3x3 to 4x the
width, PixelShuffle x2, PReLU); 9x9 conv tail. Fully convolutional: any LR size works, so the exported
graph has dynamic height and width.

Discriminator: 8 conv3x3 layers with LeakyReLU(0.2), widths w, w, 2w, 2w, 4w, 4w, 8w, 8w, every second
one strided (BatchNorm after all but the first), then dense 1024 + LeakyReLU + dense 1, returning
logits (the sigmoid lives in the loss). The dense head fixes its input size: the HR training crop.

Value range: LR input and SR output are RGB in [0, 1]. In eval mode (what is exported) the output is
clamped to [0, 1]; in training it is left free so the pixel loss has gradients everywhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.training.models.layers import check_shape


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.PReLU(width),
            nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleX2(nn.Sequential):
    """(width) x h x w -> (4 width) x h x w -> PixelShuffle -> (width) x 2h x 2w."""

    def __init__(self, width: int) -> None:
        super().__init__(nn.Conv2d(width, 4 * width, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(width))


class SRResNet(nn.Module):
    """lr [B, 3, h, w] in [0, 1] -> sr [B, 3, scale*h, scale*w] in [0, 1]."""

    def __init__(self, *, width: int, scale: int, blocks: int, bicubic_skip: bool = False) -> None:
        # width: trunk channels; scale: 2, 4 or 8 (x2 PixelShuffle stages); blocks: residual blocks in the trunk;
        # bicubic_skip: the network adds a residual to bicubic upscaling (starts as bicubic; short runs)
        super().__init__()
        self.scale, self.bicubic_skip = scale, bicubic_skip
        stages = int(math.log2(scale))
        if 2**stages != scale:
            raise ValueError(f"scale must be a power of two, got {scale}")
        # 3 x h x w -> (width) x h x w
        self.head = nn.Sequential(nn.Conv2d(3, width, 9, 1, 4), nn.PReLU(width))
        # (width) x h x w, B residual blocks, then conv-BN closed by the global skip
        self.trunk = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)],
                                   nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width))
        # (width) x h x w -> (width) x sh x sw
        self.upsample = nn.Sequential(*[UpsampleX2(width) for _ in range(stages)])
        # (width) x sh x sw -> 3 x sh x sw
        self.tail = nn.Conv2d(width, 3, 9, 1, 4)
        if bicubic_skip:  # the residual starts at zero: the untrained network is bicubic upscaling
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        check_shape(lr, (None, 3, None, None), "SRResNet input")
        h = self.head(lr)
        sr = self.tail(self.upsample(h + self.trunk(h)))
        if self.bicubic_skip:  # 3 x sh x sw bicubic upscaling plus the learnt residual
            sr = sr + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return sr if self.training else sr.clamp(0.0, 1.0)


class SRDiscriminator(nn.Module):
    """hr or sr [B, 3, S, S] in [0, 1] -> logits [B]; with ``features=True`` also the activations after
    each strided stage (for feature matching)."""

    def __init__(self, *, image_size: int, width: int) -> None:
        # image_size: S, the HR crop side (a multiple of 16: the dense head fixes it); width: the first conv's
        super().__init__()
        w, self.image_size = width, image_size
        widths = [w, w, 2 * w, 2 * w, 4 * w, 4 * w, 8 * w, 8 * w]
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(widths):
            stride = 2 if i % 2 else 1
            block = [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=i == 0)]
            if i:  # no BatchNorm after the first convolution
                block.append(nn.BatchNorm2d(c_out))
            block.append(nn.LeakyReLU(0.2, inplace=True))
            layers.append(nn.Sequential(*block))
            c_in = c_out
        # 3 x S x S -> (8w) x S/16 x S/16, one entry per conv layer
        self.convs = nn.ModuleList(layers)
        side = image_size // 16
        # (8w * side^2) -> 1024 -> 1
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * w * side * side, 1024),
                                  nn.LeakyReLU(0.2, inplace=True), nn.Linear(1024, 1))

    def forward(self, x: torch.Tensor, features: bool = False):
        check_shape(x, (None, 3, self.image_size, self.image_size), "SRDiscriminator input")
        feats = []
        for i, layer in enumerate(self.convs):
            x = layer(x)
            if i % 2:
                feats.append(x)
        logits = self.head(x).flatten()  # [B]
        return (logits, feats) if features else logits

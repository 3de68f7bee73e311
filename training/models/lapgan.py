"""LAPGAN (Denton, Chintala, Szlam & Fergus 2015): a Laplacian pyramid of generators.

The pyramid of an image ``I_0`` (side S) is ``I_{k+1} = down(I_k)`` for k = 0 .. L-1, down a 2x2
average; its Laplacian bands are ``h_k = I_k - up(I_{k+1})``, up a bilinear x2 (half-pixel centres,
what ``F.interpolate(..., mode="bilinear", align_corners=False)`` and ONNX ``Resize`` compute alike).
The coarsest level ``I_L`` (side S / 2^L) comes from an unconditional generator ``G_L(z_L)``; every
finer level k from ``G_k(z_k, up(I_{k+1}))``, which predicts the band: ``I_k = up(I_{k+1}) + h_k``.
Each finer level's discriminator sees the band together with the upsampled coarse image (two
channel groups), so it judges the band *given* the coarse image it refines.

At training time the levels are independent (each refines the *real* coarse image); at sampling time
they are chained. :class:`LapGANGenerator` holds all the levels and chains them; each level is also an
``nn.Module`` of its own, exported as one ONNX model with the upsampling inside its graph, so that a
Triton ensemble of them is pure wiring.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.training.models.layers import check_shape, dcgan_init_


def down(x: torch.Tensor) -> torch.Tensor:
    """One pyramid step down: 2x2 average (the side halves)."""
    return F.avg_pool2d(x, 2)


def up(x: torch.Tensor) -> torch.Tensor:
    """One pyramid step up: bilinear x2 with half-pixel centres (ONNX Resize, linear, half_pixel)."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """``[I_0, I_1, ..., I_levels]``: the image and its ``levels`` successive 2x2 averages."""
    out = [images]
    for _ in range(levels):
        out.append(down(out[-1]))
    return out


class CoarseGenerator(nn.Module):
    """``G_L``: z [B, Z] -> image [B, C, s, s] in [-1, 1], a fully connected net (Denton et al. use
    fully connected nets at the coarsest level too: at 7x7 there is little for convolutions to share)."""

    def __init__(self, *, side: int, channels: int, latent_dim: int, width: int) -> None:
        super().__init__()
        self.side, self.channels, self.latent_dim = side, channels, latent_dim
        self.net = nn.Sequential(  # PyTorch's default init; BatchNorm against early collapse
            nn.Linear(latent_dim, width), nn.BatchNorm1d(width), nn.ReLU(True),
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(True),
            nn.Linear(width, channels * side * side), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_shape(z, (None, self.latent_dim), "CoarseGenerator input")
        return self.net(z).view(-1, self.channels, self.side, self.side)


class LevelGenerator(nn.Module):
    """``G_k``: (z [B, Z], coarse [B, C, s, s]) -> image [B, C, 2s, 2s] = clamp(up(coarse) + band).

    z is projected to one noise plane of the level's size (Denton et al. feed the noise as an extra
    plane) and stacked with ``up(coarse)``; a few 3x3 convolutions predict the band."""

    def __init__(self, *, side: int, channels: int, latent_dim: int, width: int, depth: int = 3) -> None:
        super().__init__()
        self.side, self.channels, self.latent_dim = side, channels, latent_dim  # side: the output's
        self.noise = nn.Linear(latent_dim, side * side)
        layers: list[nn.Module] = [nn.Conv2d(channels + 1, width, 3, 1, 1), nn.ReLU(True)]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, 1, 1), nn.BatchNorm2d(width), nn.ReLU(True)]
        layers += [nn.Conv2d(width, channels, 3, 1, 1)]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)
        self.noise.reset_parameters()

    def band(self, z: torch.Tensor, upsampled: torch.Tensor) -> torch.Tensor:
        """The predicted band ``h_k`` given ``up(I_{k+1})`` (training sees it unclamped)."""
        check_shape(z, (None, self.latent_dim), "LevelGenerator z")
        check_shape(upsampled, (None, self.channels, self.side, self.side), "LevelGenerator upsampled coarse")
        plane = self.noise(z).view(-1, 1, self.side, self.side)
        return self.net(torch.cat([upsampled, plane], dim=1))

    def forward(self, z: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        upsampled = up(coarse)
        return (upsampled + self.band(z, upsampled)).clamp(-1.0, 1.0)


class LapGANGenerator(nn.Module):
    """All the levels: ``coarse`` (G_L) and ``levels`` (G_{L-1} .. G_0, coarse to fine).

    ``forward(z)`` takes one z per image, ``[B, sum(latent_dims)]``, split coarse level first
    (``z_L, z_{L-1}, ..., z_0``), and returns the finest image; :meth:`all_levels` returns every
    level's image, coarse to fine."""

    def __init__(self, *, image_size: int, channels: int, levels: int, coarse_latent_dim: int,
                 level_latent_dim: int, coarse_width: int, width: int) -> None:
        super().__init__()
        side = image_size // 2 ** levels
        self.image_size, self.channels, self.n_levels = image_size, channels, levels
        self.coarse = CoarseGenerator(side=side, channels=channels, latent_dim=coarse_latent_dim,
                                      width=coarse_width)
        self.levels = nn.ModuleList(
            LevelGenerator(side=side * 2 ** (i + 1), channels=channels, latent_dim=level_latent_dim, width=width)
            for i in range(levels))
        self.latent_dims = (coarse_latent_dim, *([level_latent_dim] * levels))
        self.latent_dim = sum(self.latent_dims)

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """z ``[B, sum]`` -> ``[z_L, ..., z_0]``, consecutive slices in that order."""
        check_shape(z, (None, self.latent_dim), "LapGANGenerator input")
        return list(torch.split(z, list(self.latent_dims), dim=1))

    def all_levels(self, z: torch.Tensor) -> list[torch.Tensor]:
        zs = self.split(z)
        images = [self.coarse(zs[0])]
        for level, zk in zip(self.levels, zs[1:], strict=True):
            images.append(level(zk, images[-1]))
        return images

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.all_levels(z)[-1]


class LevelDiscriminator(nn.Module):
    """One level's D: the coarsest level's sees the image; a finer level's sees (band, up(coarse)).
    Strided 3x3 convolutions, LeakyReLU(0.2), no normalisation, a linear head on the flattened
    features; returns logits [B]."""

    def __init__(self, *, side: int, in_channels: int, width: int) -> None:
        super().__init__()
        self.side, self.in_channels = side, in_channels
        layers: list[nn.Module] = []
        channels, s = in_channels, side
        for w in (width, width * 2):
            layers += [nn.Conv2d(channels, w, 3, 2 if s >= 4 else 1, 1), nn.LeakyReLU(0.2, inplace=True)]
            channels, s = w, (s + 1) // 2 if s >= 4 else s
        self.features = nn.Sequential(*layers)
        # PyTorch's default init: with DCGAN's N(0, 0.02) and no normalisation, D's logits start near 0
        # and it takes hundreds of steps to start telling real from fake
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels * s * s, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, (None, self.in_channels, self.side, self.side), "LevelDiscriminator input")
        return self.head(self.features(x)).flatten()


class LapGANDiscriminator(nn.Module):
    """The levels' discriminators, indexed like :attr:`LapGANGenerator.levels` with the coarse one
    first: ``forward(x, upsampled, level)``; ``upsampled`` is None at level index 0 (the coarse image)."""

    def __init__(self, *, image_size: int, channels: int, levels: int, width: int) -> None:
        super().__init__()
        side = image_size // 2 ** levels
        self.ds = nn.ModuleList(
            [LevelDiscriminator(side=side, in_channels=channels, width=width)]
            + [LevelDiscriminator(side=side * 2 ** (i + 1), in_channels=2 * channels, width=width)
               for i in range(levels)])

    def forward(self, x: torch.Tensor, upsampled: torch.Tensor | None, level: int) -> torch.Tensor:
        if upsampled is not None:
            x = torch.cat([x, upsampled], dim=1)
        return self.ds[level](x)

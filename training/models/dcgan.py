"""DCGAN (Radford, Metz & Chintala 2015) generator and discriminator.

Paper rules followed here: strided convolutions in D and fractionally-strided (transposed)
convolutions in G, no pooling, no fully connected hidden layers; BatchNorm in every layer except G's
output and D's input; ReLU in G with tanh at the output; LeakyReLU(0.2) in D; weights from
N(0, 0.02). D returns logits (the sigmoid lives in the loss).

Image sizes of the form base * 2^k with base 4 (64x64, as in the paper) or 7 (28x28 MNIST) are
supported. Widths double at every stage towards the low-resolution end.
"""

from __future__ import annotations

import torch
from torch import nn

from ganserve.training.models.layers import check_shape, dcgan_base_size, dcgan_init_, maybe_sn, norm2d


class DCGANGenerator(nn.Module):
    """z [B, latent_dim (+ cond_dim)] -> image [B, C, S, S] in [-1, 1].

    ``cond_dim`` > 0 lets conditional families (GAN-INT-CLS) append a conditioning vector to z.
    ``z_norm`` rescales z to length sqrt(latent_dim) before the first layer (the pixel norm of
    Karras et al. 2018, applied to z as ProGAN and StyleGAN do): only z's direction picks the image,
    so a z shortened by truncation stays on the shell of lengths the generator was trained on. With
    :meth:`set_truncation_anchors` the length of z becomes the truncation strength instead: a short z
    is drawn towards the nearest of a set of typical samples (multi-modal truncation, as Mokady et al.
    2022 do in StyleGAN's W space, here on z's sphere).
    """

    def __init__(self, *, image_size: int, channels: int, latent_dim: int, width: int, cond_dim: int = 0,
                 z_norm: bool = False) -> None:
        # image_size: S, 4*2^k or 7*2^k; width: at the last hidden layer (ngf), doubling towards z
        super().__init__()
        base, stages = dcgan_base_size(image_size)
        self.in_dim, self.channels, self.image_size = latent_dim + cond_dim, channels, image_size
        self.latent_dim, self.z_norm = latent_dim, z_norm
        # truncation anchors (set_truncation_anchors; not saved in checkpoints, recomputed with the
        # standing statistics): z directions [K, latent_dim] and their images [K, C*S*S]
        self.register_buffer("anchors", torch.zeros(0, latent_dim), persistent=False)
        self.register_buffer("anchor_images", torch.zeros(0, channels * image_size * image_size), persistent=False)
        self.truncation_radius = 1.0
        width = width * 2 ** (stages - 1)
        # (latent) x 1 x 1 -> (width * 2^(stages-1)) x base x base
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(self.in_dim, width, base, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        # each stage doubles the side and halves the width: ... -> (width) x S/2 x S/2
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(width // 2), nn.ReLU(True)]
            width //= 2
        # (width) x S/2 x S/2 -> (channels) x S x S, no BatchNorm at the output
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init_(self)

    def set_truncation_anchors(self, anchors: torch.Tensor, images: torch.Tensor, *, radius: float) -> None:
        """Read a shortened z as truncation (z_norm only): z of length r * sqrt(latent_dim) with
        r < ``radius`` moves towards the anchor whose image is nearest its own, by 1 - r / radius;
        ``anchors`` [K, latent_dim] are z directions, ``images`` their images. Empty: no anchors."""
        if not self.z_norm and len(anchors):
            raise ValueError("truncation anchors need z_norm: only z's direction may pick the image")
        self.anchors = anchors.detach().to(self.anchors)
        self.anchor_images = images.detach().flatten(1).to(self.anchor_images)
        self.truncation_radius = radius

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        check_shape(z, (None, self.in_dim), "DCGANGenerator input")
        if self.anchors.shape[0]:  # fixed when traced for export
            return self._anchored(z)
        return self._generate(z)

    def _anchored(self, z: torch.Tensor) -> torch.Tensor:
        # psi = 1 on the shell of lengths N(0, I) gives (and for nearly all z it draws); a shorter z (what
        # truncation makes) moves its direction towards the anchor nearest its own image, by 1 - psi
        # A z on the shell keeps its own image (exported: the second pass sits behind an ONNX If, so a
        # batch of untruncated z costs one pass; see ganserve.training.export.lazy_output).
        r = z.pow(2).mean(dim=1, keepdim=True).sqrt()
        psi = (r / self.truncation_radius).clamp(max=1.0)
        image = self._generate(z)
        own = image.flatten(1)
        dist = own.pow(2).sum(1, keepdim=True) - 2 * own @ self.anchor_images.T + self.anchor_images.pow(2).sum(1)
        u = z * torch.rsqrt(r.pow(2) + 1e-8)
        pulled = self._generate(psi * u + (1 - psi) * self.anchors[dist.argmin(dim=1)])
        return torch.where(psi[:, :, None, None] >= 1.0, image, pulled)

    def _generate(self, z: torch.Tensor) -> torch.Tensor:
        if self.z_norm:  # z * rsqrt(mean(z^2)) over z's own components (a conditioning vector is left alone)
            latent = z[:, : self.latent_dim]
            latent = latent * torch.rsqrt(latent.pow(2).mean(dim=1, keepdim=True) + 1e-8)
            z = torch.cat([latent, z[:, self.latent_dim:]], dim=1) if self.in_dim > self.latent_dim else latent
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """image [B, C, S, S] -> logits [B].

    Split into ``features`` (down to base x base) and ``head`` so a conditional family can join a
    replicated embedding to the base-resolution features before the head (``cond_dim`` channels).
    """

    def __init__(self, *, image_size: int, channels: int, width: int, norm: str = "batch",
                 spectral_norm: bool = False, cond_dim: int = 0) -> None:
        # width: at the first layer (ndf), doubling at every stage; norm: batch | layer | none (hidden layers)
        super().__init__()
        base, stages = dcgan_base_size(image_size)
        self.channels, self.image_size, self.base = channels, image_size, base
        sn = spectral_norm
        # (channels) x S x S -> (width) x S/2 x S/2, no normalisation at the input layer
        layers: list[nn.Module] = [maybe_sn(nn.Conv2d(channels, width, 4, 2, 1, bias=False), sn),
                                   nn.LeakyReLU(0.2, inplace=True)]
        # each stage halves the side and doubles the width, down to base x base
        for _ in range(stages - 1):
            layers += [maybe_sn(nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), sn),
                       norm2d(norm, width * 2), nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        self.features = nn.Sequential(*layers)
        self.feature_channels = width
        # (width + cond_dim) x base x base -> 1 x 1 x 1
        self.head = maybe_sn(nn.Conv2d(width + cond_dim, 1, base, 1, 0, bias=False), sn)
        dcgan_init_(self)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        check_shape(x, (None, self.channels, self.image_size, self.image_size), "DCGANDiscriminator input")
        h = self.features(x)  # [B, width, base, base]
        if cond is not None:  # replicate the conditioning vector spatially, depth-concatenate
            h = torch.cat([h, cond[:, :, None, None].expand(-1, -1, self.base, self.base)], dim=1)
        return self.head(h).flatten()  # [B]

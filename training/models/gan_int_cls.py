"""GAN-INT-CLS (Reed et al. 2016, "Generative Adversarial Text to Image Synthesis").

- G: the text embedding is compressed by a fully connected layer + LeakyReLU (``proj_dim``),
  concatenated to z, then DCGAN transposed convolutions (:class:`DCGANGenerator` with ``cond_dim``).
- D: DCGAN strided convolutions down to the base resolution (4x4, or 7x7 for 28x28 images), the
  compressed embedding replicated spatially and depth-concatenated there (optionally with a
  minibatch-stddev channel, Karras et al. 2018), a 1x1 convolution with normalisation and LeakyReLU,
  then a base x base convolution to one logit.

:class:`TextToImageGenerator` is what the training loop sees as "the generator": the frozen,
pre-trained text encoder and the conditional generator in one module, so a checkpoint holds both and
the export writes both (``text2img_encoder``, ``text2img_generator``).
"""

from __future__ import annotations

import torch
from torch import nn

from ganserve.training.models.dcgan import DCGANDiscriminator, DCGANGenerator
from ganserve.training.models.layers import check_shape, dcgan_init_, maybe_sn, norm2d
from ganserve.training.models.text_encoder import TextEncoder, TextEncoderConfig


def _compress(embedding_dim: int, proj_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(embedding_dim, proj_dim), nn.LeakyReLU(0.2, inplace=True))


class ConditionalGenerator(nn.Module):
    """(z [B, Z], embedding [B, E]) -> image [B, C, S, S] in [-1, 1]."""

    def __init__(self, *, image_size: int, channels: int, latent_dim: int, width: int, embedding_dim: int,
                 proj_dim: int) -> None:
        # width: the DCGAN generator's (ngf); proj_dim: P, the compressed embedding joined to z
        super().__init__()
        self.latent_dim, self.embedding_dim = latent_dim, embedding_dim
        self.compress = _compress(embedding_dim, proj_dim)                  # [B, E] -> [B, P]
        self.net = DCGANGenerator(image_size=image_size, channels=channels, latent_dim=latent_dim, width=width,
                                  cond_dim=proj_dim)                       # [B, Z + P] -> image
        dcgan_init_(self.compress)

    def forward(self, z: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        check_shape(z, (None, self.latent_dim), "ConditionalGenerator z")
        check_shape(embedding, (None, self.embedding_dim), "ConditionalGenerator embedding")
        return self.net(torch.cat([z, self.compress(embedding)], dim=1))


class TextToImageGenerator(nn.Module):
    """The frozen text encoder plus the conditional generator.

    ``forward(z, text)``: ``text`` is either char-v1 token ids (int64 [B, L], run through the frozen
    encoder) or embeddings (float [B, E], e.g. GAN-INT's interpolations).
    """

    def __init__(self, encoder: TextEncoderConfig, *, image_size: int, channels: int, latent_dim: int, width: int,
                 proj_dim: int) -> None:
        super().__init__()
        self.encoder = TextEncoder(encoder).requires_grad_(False)
        self.generator = ConditionalGenerator(image_size=image_size, channels=channels, latent_dim=latent_dim,
                                              width=width, embedding_dim=encoder.embedding_dim, proj_dim=proj_dim)

    def train(self, mode: bool = True) -> TextToImageGenerator:
        super().train(mode)
        self.encoder.eval()  # frozen: never in training mode
        return self

    @torch.no_grad()
    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        embedding = self.embed(text) if not text.is_floating_point() else text
        return self.generator(z, embedding)


def minibatch_stddev(h: torch.Tensor, group: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, 1, H, W]: per group of ``group`` samples (the whole batch when B is not a
    multiple of it), the standard deviation of each feature over the group, averaged over features
    (Karras et al. 2018). A batch of near-identical samples shows up as a small value."""
    b = h.shape[0]
    g = group if b % group == 0 else b
    y = h.reshape(g, b // g, *h.shape[1:])                       # [G, B/G, C, H, W]
    std = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # [B/G]
    return std.repeat(g)[:, None, None, None].expand(-1, 1, *h.shape[2:])


class ConditionalDiscriminator(nn.Module):
    """(image [B, C, S, S], embedding [B, E]) -> logits [B]; with ``features=True`` also the image
    features at base x base [B, width, base, base] (before the text joins: for feature matching)."""

    def __init__(self, *, image_size: int, channels: int, width: int, embedding_dim: int, proj_dim: int,
                 norm: str = "batch", spectral_norm: bool = False, minibatch_std: int = 0) -> None:
        # width: the DCGAN discriminator's (ndf); proj_dim: P, the compressed embedding joined at base x base;
        # minibatch_std: group size of a minibatch-stddev channel joined there too (0: none)
        super().__init__()
        # only its convolutional trunk is used
        trunk = DCGANDiscriminator(image_size=image_size, channels=channels, width=width, norm=norm,
                                   spectral_norm=spectral_norm)
        self.features, self.base, width = trunk.features, trunk.base, trunk.feature_channels
        self.channels, self.image_size, self.embedding_dim = channels, image_size, embedding_dim
        self.minibatch_std = minibatch_std
        self.compress = _compress(embedding_dim, proj_dim)
        sn = spectral_norm
        # (width + P [+ 1]) x base x base -> width x base x base -> 1 x 1 x 1
        self.head = nn.Sequential(
            maybe_sn(nn.Conv2d(width + proj_dim + (minibatch_std > 0), width, 1, 1, 0, bias=False), sn),
            norm2d(norm, width), nn.LeakyReLU(0.2, inplace=True),
            maybe_sn(nn.Conv2d(width, 1, self.base, 1, 0, bias=False), sn),
        )
        dcgan_init_(self.compress)
        dcgan_init_(self.head)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, features: bool = False):
        check_shape(x, (None, self.channels, self.image_size, self.image_size), "ConditionalDiscriminator image")
        check_shape(embedding, (x.shape[0], self.embedding_dim), "ConditionalDiscriminator embedding")
        h = self.features(x)                                              # [B, width, base, base]
        t = self.compress(embedding)[:, :, None, None].expand(-1, -1, self.base, self.base)
        joined = [h, t] + ([minibatch_stddev(h, self.minibatch_std)] if self.minibatch_std else [])
        logits = self.head(torch.cat(joined, dim=1)).flatten()            # [B]
        return (logits, h) if features else logits

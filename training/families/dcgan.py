"""DCGAN (Radford, Metz & Chintala 2015): unconditional z -> image, the family the text-to-image
GAN-INT-CLS builds on (its model config and checks extend this one's)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.config import ModelConfig, RunConfig
from ganserve.training.ema import EMA
from ganserve.training.families.base import DStepOut, ExportSpec, Family
from ganserve.training.models.dcgan import DCGANDiscriminator, DCGANGenerator

NORMS = ("batch", "layer", "none")
Z_NORMS = ("none", "pixel")
ANCHOR_POOL = 5000  # samples whose k-means medoids become the truncation anchors


def kmeans_medoids(x: torch.Tensor, k: int, *, gen: torch.Generator, iters: int = 20) -> torch.Tensor:
    """Indices into ``x`` [N, P] of the medoids (the member nearest the centre) of a k-means with ``k``
    clusters, started from ``k`` rows drawn with ``gen``; clusters that end empty give none."""
    centres = x[torch.randperm(len(x), generator=gen, device=x.device)[:k]].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
    assign = torch.cdist(x, centres).argmin(dim=1)
    dist = (x - centres[assign]).norm(dim=1)
    return torch.stack([torch.nonzero(assign == j).flatten()[dist[assign == j].argmin()]
                        for j in range(k) if (assign == j).any()])


@dataclass(frozen=True)
class DCGANModelConfig(ModelConfig):
    family: str = "dcgan"
    latent_dim: int = 100        # length of z
    d_norm: str = "batch"        # normalisation in D's hidden layers: one of NORMS
    spectral_norm: bool = False  # spectral normalisation on D's weights (Miyato et al. 2018)
    z_norm: str = "none"         # "pixel": G rescales z to length sqrt(latent_dim) first (ProGAN's pixel
    #                              norm on z), so truncation's shorter z is no longer out of distribution
    truncation_anchors: int = 200  # z_norm=pixel: the served generator reads a z shorter than
    #                              truncation_radius * sqrt(latent_dim) as truncation towards the nearest of
    #                              this many typical samples (k-means medoids of its images); 0: off
    truncation_radius: float = 0.85  # 98% of N(0, I) draws in 100 dimensions are longer: untouched


def validate_dcgan_model(cfg: RunConfig) -> None:
    """Checks of the DCGAN model fields (also those of GAN-INT-CLS, whose networks are DCGAN's)."""
    m, t = cfg.model, cfg.train
    if m.d_norm not in NORMS:
        raise UsageError(f"unknown model.d_norm {m.d_norm!r}; valid: {', '.join(NORMS)}")
    if m.z_norm not in Z_NORMS:
        raise UsageError(f"unknown model.z_norm {m.z_norm!r}; valid: {', '.join(Z_NORMS)}")
    if m.z_norm != "none" and m.family != "dcgan":
        raise UsageError(f"model.z_norm applies to the dcgan family, not {m.family!r}")
    if m.truncation_anchors < 0 or not 0 < m.truncation_radius <= 1:
        raise UsageError("model.truncation_anchors must be >= 0 and model.truncation_radius in (0, 1], got "
                         f"{m.truncation_anchors} and {m.truncation_radius}")
    if m.latent_dim <= 0:
        raise UsageError(f"model.latent_dim must be positive, got {m.latent_dim}")
    if t.loss == "wgan-gp" and m.d_norm == "batch":
        raise UsageError("the wgan-gp gradient penalty is per sample, which batch norm in D breaks; "
                         "set model.d_norm=layer (or none)")


class DCGANFamily(Family):
    """Unconditional DCGAN: z ~ N(0, I) -> image."""

    name = "dcgan"
    kind = "unconditional"
    model_config = DCGANModelConfig
    datasets = ("mnist", "image-folder", "digits")

    @classmethod
    def validate_config(cls, cfg: RunConfig) -> None:
        validate_dcgan_model(cfg)

    def build_generator(self) -> nn.Module:
        m = self.cfg.model
        return DCGANGenerator(image_size=m.image_size, channels=m.channels, latent_dim=m.latent_dim, width=m.g_width,
                              z_norm=m.z_norm == "pixel")

    def build_discriminator(self) -> nn.Module:
        m = self.cfg.model
        return DCGANDiscriminator(image_size=m.image_size, channels=m.channels, width=m.d_width, norm=m.d_norm,
                                  spectral_norm=m.spectral_norm)

    def sample_inputs(self, n, *, gen, device):
        return torch.randn(n, self.cfg.model.latent_dim, generator=gen, device=device)

    def standing_generator(self, ema: EMA, *, device: torch.device) -> nn.Module:
        """Standing BatchNorm statistics, then (model.z_norm=pixel, truncation_anchors > 0) the truncation
        anchors: the medoids of a k-means of the images of ANCHOR_POOL z directions, fixed seed."""
        G = super().standing_generator(ema, device=device)
        m = self.cfg.model
        if m.z_norm != "pixel" or m.truncation_anchors == 0:
            return G
        G.set_truncation_anchors(torch.zeros(0, m.latent_dim), torch.zeros(0, 1), radius=m.truncation_radius)
        gen = torch.Generator(device=device).manual_seed(24680)
        z = self.sample_inputs(ANCHOR_POOL, gen=gen, device=device)
        with torch.no_grad():
            images = torch.cat([G(part) for part in z.split(500)]).flatten(1)
        picked = kmeans_medoids(images, min(m.truncation_anchors, ANCHOR_POOL), gen=gen)
        u = z[picked] * torch.rsqrt(z[picked].pow(2).mean(dim=1, keepdim=True))
        G.set_truncation_anchors(u, images[picked], radius=m.truncation_radius)
        return G

    def d_step(self, *, G, critic, batch, gen, keep_graph):
        real = batch["images"]
        z = self.sample_inputs(real.shape[0], gen=gen, device=real.device)
        with torch.set_grad_enabled(keep_graph):
            fake = G(z)  # kept with its graph for the G step when this is the last D step
        return DStepOut(real_logits=critic(real), fake_logits=critic(fake.detach()), real_images=real,
                        fake_images=fake.detach(), gp_critic=critic, carry={"fake": fake})

    def g_loss(self, *, G, critic, batch, adv, gen, carry):
        fake = carry["fake"]  # (2) update G: maximise log D(G(z)), reusing the D step's fakes
        logits = critic(fake)
        return adv.g_loss(logits), {"d_fake_for_g": logits.detach().mean()}

    def export_spec(self) -> ExportSpec:
        m = self.cfg.model
        return ExportSpec(
            kind="unconditional",
            inputs={"z": ("batch", m.latent_dim)},
            outputs={"image": ("batch", m.channels, m.image_size, m.image_size)},
            metadata={"ganserve.latent_dim": str(m.latent_dim), "ganserve.latent_distribution": "normal",
                      "ganserve.value_range": "-1,1", "ganserve.channels": str(m.channels),
                      "ganserve.image_size": str(m.image_size)},
            **({"lazy_output": True, "parity_row_scales": (1.0, 0.5, 0.3)}
               if m.z_norm == "pixel" and m.truncation_anchors else {}),
        )

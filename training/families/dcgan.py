"""DCGAN (Radford, Metz & Chintala 2015): unconditional z -> image, the family the text-to-image
GAN-INT-CLS builds on (its model config and checks extend this one's)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.config import ModelConfig, RunConfig
from ganserve.training.families.base import DStepOut, ExportSpec, Family
from ganserve.training.models.dcgan import DCGANDiscriminator, DCGANGenerator

NORMS = ("batch", "layer", "none")
Z_NORMS = ("none", "pixel")


@dataclass(frozen=True)
class DCGANModelConfig(ModelConfig):
    family: str = "dcgan"
    latent_dim: int = 100        # length of z
    d_norm: str = "batch"        # normalisation in D's hidden layers: one of NORMS
    spectral_norm: bool = False  # spectral normalisation on D's weights (Miyato et al. 2018)
    z_norm: str = "none"         # "pixel": G rescales z to length sqrt(latent_dim) first (ProGAN's pixel
    #                              norm on z), so truncation's shorter z is no longer out of distribution


def validate_dcgan_model(cfg: RunConfig) -> None:
    """Checks of the DCGAN model fields (also those of GAN-INT-CLS, whose networks are DCGAN's)."""
    m, t = cfg.model, cfg.train
    if m.d_norm not in NORMS:
        raise UsageError(f"unknown model.d_norm {m.d_norm!r}; valid: {', '.join(NORMS)}")
    if m.z_norm not in Z_NORMS:
        raise UsageError(f"unknown model.z_norm {m.z_norm!r}; valid: {', '.join(Z_NORMS)}")
    if m.z_norm != "none" and m.family != "dcgan":
        raise UsageError(f"model.z_norm applies to the dcgan family, not {m.family!r}")
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
        )

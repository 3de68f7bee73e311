"""Generator families: what differs between DCGAN, GAN-INT-CLS and SRGAN, behind one interface.

The training loop (``training.loop``) is family-agnostic. A :class:`Family` knows how to build its
networks and data, how to score a batch with the discriminator, the generator's loss, what to sample
for the grid, and what its exported ONNX model looks like. Families are registered by name and looked
up with :func:`get_family`, which fails loudly on an unknown name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ganserve.errors import UsageError
from training.config import RunConfig
from training.data import ImageSet, load_dataset, to_unit_range
from training.losses import AdversarialLoss
from training.models.dcgan import DCGANDiscriminator, DCGANGenerator

Critic = Callable[..., torch.Tensor]  # D with instance noise applied to its image input


@dataclass
class DStepOut:
    real_logits: torch.Tensor
    fake_logits: torch.Tensor
    real_images: torch.Tensor      # for the gradient penalty
    fake_images: torch.Tensor
    gp_critic: Callable[[torch.Tensor], torch.Tensor]  # critic as a function of images only
    carry: dict[str, Any] = field(default_factory=dict)  # reused by the G step (e.g. the fakes)


@dataclass(frozen=True)
class ExportSpec:
    """What the exported ONNX model looks like (see docs/model-contract.md)."""

    kind: str
    inputs: dict[str, tuple[int | str, ...]]   # name -> shape; a string names a dynamic axis ("batch", ...)
    outputs: dict[str, tuple[int | str, ...]]
    metadata: dict[str, str]
    example_sizes: dict[str, int] = field(default_factory=dict)  # sizes used to trace dynamic axes


class Family:
    name = ""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg

    # networks and data
    def build_generator(self) -> nn.Module:
        raise NotImplementedError

    def build_discriminator(self) -> nn.Module | None:
        raise NotImplementedError

    def load_data(self) -> ImageSet:
        return load_dataset(self.cfg.data, image_size=self.cfg.model.image_size,
                            channels=self.cfg.model.channels)

    def batch(self, data: ImageSet, idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        return {"images": to_unit_range(data.images[idx].to(device, non_blocking=True))}

    # one step
    def d_step(self, *, G: nn.Module, critic: Critic, batch: dict, gen: torch.Generator,
               keep_graph: bool) -> DStepOut:
        raise NotImplementedError

    def g_loss(self, *, G: nn.Module, critic: Critic, batch: dict, adv: AdversarialLoss,
               gen: torch.Generator, carry: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    # sampling and export
    def sample_inputs(self, n: int, *, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def export_spec(self) -> ExportSpec:
        raise NotImplementedError


class DCGANFamily(Family):
    """Unconditional DCGAN: z ~ N(0, I) -> image."""

    name = "dcgan"

    def build_generator(self) -> nn.Module:
        return DCGANGenerator(self.cfg.model)

    def build_discriminator(self) -> nn.Module:
        return DCGANDiscriminator(self.cfg.model)

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


FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (DCGANFamily,)}


def get_family(cfg: RunConfig) -> Family:
    try:
        cls = FAMILIES[cfg.model.family]
    except KeyError:
        raise UsageError(f"unknown model family {cfg.model.family!r}; "
                         f"valid families: {', '.join(FAMILIES)}") from None
    return cls(cfg)

"""LAPGAN (Denton et al. 2015): a coarse unconditional generator and, at each finer level, a
conditional generator of the Laplacian band, trained per the paper: the levels are independent at
training time (each finer level refines the *real* coarse image of a real digit, its discriminator
judging (band, upsampled coarse image)), and chained only at sampling time.

The loop sees one generator (all levels, :class:`LapGANGenerator`) and one discriminator (all
levels' D); a step updates every level at once. Their losses are summed through one mean over the
levels' logits: the levels share no parameter, so each level's gradients are its own loss's (scaled
by 1 / (levels + 1), which Adam's normalisation cancels). The export writes one ONNX model per level
(``<name>_coarse``, ``<name>_level<k>``) and a Triton ensemble ``<name>`` that chains them
(docs/model-contract.md, "Pyramid models").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.config import ModelConfig, RunConfig
from ganserve.training.families.base import DStepOut, ExportSpec, Family
from ganserve.training.models.lapgan import LapGANDiscriminator, LapGANGenerator, pyramid, up


@dataclass(frozen=True)
class LapGANModelConfig(ModelConfig):
    family: str = "lapgan"
    levels: int = 2              # finer levels above the coarse one: 28 -> 14 -> 7 (coarse side image_size / 2^levels)
    coarse_latent_dim: int = 32  # length of z_L, the coarse generator's z
    level_latent_dim: int = 16   # length of z_k at each finer level (projected to one noise plane)
    coarse_width: int = 256      # hidden units of the coarse level's fully connected G
    # g_width: channels of the finer levels' convolutions; d_width: every level's D at its first layer


def level_names(levels: int) -> list[str]:
    """Export suffixes, coarse to fine: ``_coarse``, ``_level<L-1>``, ..., ``_level0``."""
    return ["_coarse"] + [f"_level{k}" for k in range(levels - 1, -1, -1)]


def ensemble_tensors(levels: int) -> tuple[list[str], list[str]]:
    """The ensemble's z inputs and level images, coarse to fine: ``z_L .. z_0`` and ``image_L .. image_1,
    image`` (level 0, the final image, keeps the contract's name ``image``)."""
    return ([f"z_{k}" for k in range(levels, -1, -1)],
            [f"image_{k}" if k else "image" for k in range(levels, -1, -1)])


class LapGANFamily(Family):
    name = "lapgan"
    kind = "unconditional"
    model_config = LapGANModelConfig
    datasets = ("mnist", "image-folder", "digits")

    @classmethod
    def validate_config(cls, cfg: RunConfig) -> None:
        m, t = cfg.model, cfg.train
        if m.levels < 1:
            raise UsageError(f"model.levels must be >= 1 (one finer level at least), got {m.levels}")
        side = m.image_size // 2 ** m.levels
        if side < 2 or side * 2 ** m.levels != m.image_size:
            raise UsageError(f"model.image_size={m.image_size} cannot be halved model.levels={m.levels} times down "
                             f"to a side >= 2 (e.g. 28 with 2 levels: 7 -> 14 -> 28)")
        for key, value in {"model.coarse_latent_dim": m.coarse_latent_dim, "model.level_latent_dim":
                           m.level_latent_dim, "model.coarse_width": m.coarse_width}.items():
            if value <= 0:
                raise UsageError(f"{key} must be positive, got {value}")
        if t.loss == "wgan-gp":
            raise UsageError("lapgan trains every level in one step; the wgan-gp penalty is not split by "
                             "level: use bce, hinge or lsgan")

    def build_generator(self) -> LapGANGenerator:
        m = self.cfg.model
        return LapGANGenerator(image_size=m.image_size, channels=m.channels, levels=m.levels,
                               coarse_latent_dim=m.coarse_latent_dim, level_latent_dim=m.level_latent_dim,
                               coarse_width=m.coarse_width, width=m.g_width)

    def build_discriminator(self) -> nn.Module:
        m = self.cfg.model
        return LapGANDiscriminator(image_size=m.image_size, channels=m.channels, levels=m.levels, width=m.d_width)

    @property
    def latent_dim(self) -> int:
        m = self.cfg.model
        return m.coarse_latent_dim + m.levels * m.level_latent_dim

    def sample_inputs(self, n, *, gen, device):
        return torch.randn(n, self.latent_dim, generator=gen, device=device)

    def d_step(self, *, G, critic, batch, gen, keep_graph):
        """Every level on the real pyramid: the coarse level's real image against G_L(z_L); each finer
        level's real band ``I_k - up(I_{k+1})`` against ``G_k``'s band, both beside ``up(I_{k+1})``."""
        if hasattr(G, "module"):  # DDP syncs gradients of forward() calls only; the levels are called one by one
            raise UsageError("lapgan trains in one process: its levels are called one by one, which "
                             "DistributedDataParallel would not keep in sync across processes; run it without torchrun")
        levels = G.n_levels
        images = pyramid(batch["images"], levels)[::-1]  # coarse to fine: I_L .. I_0
        z = G.split(self.sample_inputs(images[0].shape[0], gen=gen, device=images[0].device))
        real_logits, fake_logits, fakes = [], [], []
        with torch.set_grad_enabled(keep_graph):
            fakes.append((G.coarse(z[0]), None))
        real_logits.append(critic(images[0], None, 0))
        fake_logits.append(critic(fakes[0][0].detach(), None, 0))
        for i, (level, zk) in enumerate(zip(G.levels, z[1:], strict=True), start=1):
            upsampled = up(images[i - 1])
            with torch.set_grad_enabled(keep_graph):
                band = level.band(zk, upsampled)
            fakes.append((band, upsampled))
            real_logits.append(critic(images[i] - upsampled, upsampled, i))
            fake_logits.append(critic(band.detach(), upsampled, i))
        real, fake = torch.cat(real_logits), torch.cat(fake_logits)
        return DStepOut(real_logits=real, fake_logits=fake, real_images=batch["images"],
                        fake_images=batch["images"], gp_critic=critic, carry={"fakes": fakes})

    def g_loss(self, *, G, critic, batch, adv, gen, carry):
        logits = torch.cat([critic(x, upsampled, i) for i, (x, upsampled) in enumerate(carry["fakes"])])
        return adv.g_loss(logits), {"d_fake_for_g": logits.detach().mean()}

    # --- export -------------------------------------------------------------------------------

    def _level_spec(self, index: int, *, kind: str, side: int, latent_dim: int, inputs: dict,
                    ensemble: dict[str, str], exposed: bool) -> ExportSpec:
        m = self.cfg.model
        return ExportSpec(
            kind=kind, inputs=inputs, outputs={"image": ("batch", m.channels, side, side)},
            metadata={"ganserve.latent_dim": str(latent_dim), "ganserve.latent_distribution": "normal",
                      "ganserve.value_range": "-1,1", "ganserve.channels": str(m.channels),
                      "ganserve.image_size": str(side), "ganserve.level": str(m.levels - index)},
            ensemble_map=ensemble, ensemble_exposed=exposed)

    def export_spec(self) -> ExportSpec:
        """The final level's spec (the pyramid's image); :meth:`export_parts` has every level's."""
        return self.export_parts(self.build_generator())[-1][2]

    def export_parts(self, G):
        m = self.cfg.model
        zs, images = ensemble_tensors(m.levels)
        coarse_side = m.image_size // 2 ** m.levels
        parts = [("_coarse", G.coarse, self._level_spec(
            0, kind="pyramid-coarse", side=coarse_side, latent_dim=m.coarse_latent_dim,
            inputs={"z": ("batch", m.coarse_latent_dim)}, ensemble={"z": zs[0], "image": images[0]},
            exposed=True))]
        for i, (suffix, level) in enumerate(zip(level_names(m.levels)[1:], G.levels, strict=True), start=1):
            side = coarse_side * 2 ** i
            parts.append((suffix, level, self._level_spec(
                i, kind="pyramid-level", side=side, latent_dim=m.level_latent_dim,
                inputs={"z": ("batch", m.level_latent_dim), "coarse": ("batch", m.channels, side // 2, side // 2)},
                ensemble={"z": zs[i], "coarse": images[i - 1], "image": images[i]}, exposed=True)))
        return parts

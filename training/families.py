"""Generator families: what differs between DCGAN, GAN-INT-CLS and SRGAN, behind one interface.

The training loop (``training.loop``) is family-agnostic. A :class:`Family` knows how to build its
networks and data, how to score a batch with the discriminator, the generator's loss, what to sample
for the grid, and what its exported ONNX model looks like. Families are registered by name and looked
up with :func:`get_family`, which fails loudly on an unknown name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.errors import UsageError
from training.config import RunConfig
from training.data import ImageSet, SRPatchSet, load_dataset, load_sr_dataset, to_unit_range
from training.losses import AdversarialLoss, feature_matching_loss, load_vgg19, pixel_loss, vgg_content_loss
from training.models.dcgan import DCGANDiscriminator, DCGANGenerator
from training.models.srgan import SRDiscriminator, SRResNet

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
    # sizes of the non-batch dynamic axes to check ONNX/PyTorch parity at (one check per entry)
    parity_sizes: tuple[dict[str, int], ...] = ({},)
    example_distribution: str = "normal"  # random test inputs: "normal" (N(0, 1)) or "uniform" ([0, 1))
    # config.pbtxt dims (without batch) where Triton should see fixed shapes although the ONNX axes are
    # dynamic; tensors not named here get the ONNX dims with -1 for dynamic
    config_dims: dict[str, tuple[int, ...]] = field(default_factory=dict)
    config_note: str = ""  # comment lines for the top of config.pbtxt (why dims are what they are)


class Family:
    name = ""
    checks_mode_collapse = True   # compare sample diversity with real data's (unconditional sampling)
    calibration = (256, 32)       # (batch, batches) of sample_inputs that recompute the EMA's BatchNorm stats

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.data: Any = None     # the training data, set by the Trainer (or loaded on demand)

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

    def render_samples(self, G: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] for the sample grid, from ``sample_inputs``."""
        return G(inputs)


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


class SRResNetFamily(Family):
    """Super-resolution, stage 1 (Ledig et al. 2017): SRResNet trained with a pixel loss, no D.

    Batches are aligned (LR, HR) crops in [0, 1]; ``sample_inputs`` draws LR crops from the training
    images (the BatchNorm recalibration and the sample grid need real LR images, not noise).
    """

    name = "srresnet"
    checks_mode_collapse = False  # SR output is determined by its input: no sample diversity to lose
    calibration = (16, 16)        # 256 LR crops: enough pixels for per-channel statistics

    @property
    def lr_patch(self) -> int:
        return self.cfg.model.image_size // self.cfg.model.scale

    def build_generator(self) -> nn.Module:
        return SRResNet(self.cfg.model)

    def build_discriminator(self) -> nn.Module | None:
        return None

    def load_data(self) -> SRPatchSet:
        return load_sr_dataset(self.cfg.data, scale=self.cfg.model.scale, lr_patch=self.lr_patch,
                               seed=self.cfg.train.seed)

    def batch(self, data, idx, device):
        lr, hr = data.crops(idx)
        return {"lr": lr.to(device).float().div_(255), "hr": hr.to(device).float().div_(255)}

    def sample_inputs(self, n, *, gen, device):
        if self.data is None:
            self.data = self.load_data()
        idx = torch.randint(0, len(self.data), (n,), generator=gen, device=gen.device).cpu()
        return self.batch(self.data, idx, device)["lr"]

    def render_samples(self, G, inputs):
        """Bicubic upscaling and the model's output, side by side per input, in [-1, 1]."""
        sr = G(inputs).clamp(0, 1)
        bicubic = F.interpolate(inputs, scale_factor=self.cfg.model.scale, mode="bicubic",
                                align_corners=False).clamp(0, 1)
        return torch.stack([bicubic, sr], 1).flatten(0, 1).mul(2).sub(1)

    def content_loss(self, *, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = pixel_loss(self.cfg.train.pixel_loss, sr, hr)
        return loss, {"loss_pixel": loss.detach()}

    def g_loss(self, *, G, critic, batch, adv, gen, carry):
        sr = carry["sr"] if "sr" in carry else G(batch["lr"])
        return self.content_loss(sr=sr, hr=batch["hr"])

    def export_spec(self) -> ExportSpec:
        m = self.cfg.model
        t, s = m.tile_size, m.scale
        return ExportSpec(
            kind="super-resolution",
            inputs={"lr": ("batch", 3, "h", "w")},
            outputs={"sr": ("batch", 3, "sh", "sw")},
            metadata={"ganserve.scale": str(s), "ganserve.value_range": "0,1", "ganserve.input_range": "0,1",
                      "ganserve.channels": "3", "ganserve.tile_size": str(t),
                      "ganserve.tile_overlap": str(m.tile_overlap)},
            example_sizes={"h": 24, "w": 24},
            parity_sizes=({"h": 17, "w": 23}, {"h": 9, "w": 31}, {"h": t, "w": t}),
            example_distribution="uniform",
            config_note=(
                f"Super-resolution x{s}: lr [3, h, w] -> sr [3, {s}h, {s}w], h and w dynamic (-1), so any tile\n"
                f"size runs. The gateway cuts images into {t}x{t} LR tiles overlapping by {m.tile_overlap} px by default\n"
                "(ONNX metadata ganserve.tile_size / ganserve.tile_overlap; a request may choose others) and\n"
                "sends one request's tiles, all of one shape, as batches; the dynamic batcher merges only\n"
                "requests of equal shape, so requests on the same tile size batch together. Each output pixel\n"
                "comes from the tile that owns it. Values: lr and sr RGB in [0, 1]."),
        )


class SRGANFamily(SRResNetFamily):
    """Super-resolution, stage 2: SRResNet generator (usually initialised from a stage-1 checkpoint via
    ``train.init_from``) against the VGG-style discriminator; G's loss is
    content + ``adv_weight`` * adversarial, the content loss chosen by ``train.content_loss``:
    ``vgg`` (VGG19 feature MSE, needs ``train.vgg_weights``), ``feature-matching`` (pixel loss plus
    matching D's activations of SR and HR: the fallback without VGG weights) or ``pixel``."""

    name = "srgan"

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self._vgg: nn.Module | None = None

    def build_discriminator(self) -> nn.Module:
        return SRDiscriminator(self.cfg.model)

    def vgg(self, device: torch.device) -> nn.Module:
        if self._vgg is None:
            self._vgg = load_vgg19(self.cfg.train.vgg_weights, layer=self.cfg.train.vgg_layer)
        return self._vgg.to(device)

    def d_step(self, *, G, critic, batch, gen, keep_graph):
        # (1) update D: real HR crops against G's SR output for the matching LR crops
        lr, hr = batch["lr"], batch["hr"]
        with torch.set_grad_enabled(keep_graph):
            sr = G(lr)  # kept with its graph for the G step when this is the last D step
        real_logits, real_feats = critic(hr, True)
        return DStepOut(real_logits=real_logits, fake_logits=critic(sr.detach()), real_images=hr,
                        fake_images=sr.detach(), gp_critic=critic,
                        carry={"sr": sr, "real_features": [f.detach() for f in real_feats]})

    def content_loss(self, *, sr, hr):
        t = self.cfg.train
        stats: dict[str, torch.Tensor] = {}
        if t.content_loss == "vgg":
            loss = t.content_weight * vgg_content_loss(self.vgg(sr.device), sr, hr)
            stats["loss_vgg"] = loss.detach()
        else:
            loss = pixel_loss(t.pixel_loss, sr, hr)
            stats["loss_pixel"] = loss.detach()
        return loss, stats

    def g_loss(self, *, G, critic, batch, adv, gen, carry):
        # (2) update G: content loss + adv_weight * non-saturating adversarial loss on D(G(lr))
        t = self.cfg.train
        sr = carry["sr"]
        loss, stats = self.content_loss(sr=sr, hr=batch["hr"])
        logits, feats = critic(sr, True)
        adv_loss = adv.g_loss(logits)
        loss = loss + t.adv_weight * adv_loss
        stats.update(loss_adv=adv_loss.detach(), d_fake_for_g=logits.detach().mean())
        if t.content_loss == "feature-matching":
            fm = feature_matching_loss(feats, carry["real_features"])
            loss = loss + t.fm_weight * fm
            stats["loss_fm"] = fm.detach()
        return loss, stats


FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (DCGANFamily, SRResNetFamily, SRGANFamily)}


def get_family(cfg: RunConfig) -> Family:
    try:
        cls = FAMILIES[cfg.model.family]
    except KeyError:
        raise UsageError(f"unknown model family {cfg.model.family!r}; "
                         f"valid families: {', '.join(FAMILIES)}") from None
    return cls(cfg)

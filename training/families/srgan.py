"""Super-resolution (Ledig et al. 2017): SRResNet (stage 1, pixel loss, no discriminator) and SRGAN
(stage 2, adversarial + content loss), their config fields and checks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.config import ModelConfig, RunConfig, TrainConfig
from ganserve.training.data.sr import SRPatchSet, load_sr_dataset
from ganserve.training.families.base import DStepOut, ExportSpec, Family
from ganserve.training.losses import (
    VGG19_LAYERS,
    feature_matching_loss,
    load_vgg19,
    pixel_loss,
    vgg_content_loss,
)
from ganserve.training.models.srgan import SRDiscriminator, SRResNet

PIXEL_LOSSES = ("mse", "l1")
CONTENT_LOSSES = ("pixel", "vgg", "feature-matching")


@dataclass(frozen=True)
class SRModelConfig(ModelConfig):
    """g_width is the SRResNet trunk's width, d_width the SRGAN discriminator's first; image_size the
    side of the HR training crops."""

    family: str = "srresnet"
    channels: int = 3            # RGB only
    scale: int = 4               # upscaling factor: 2, 4 or 8 (PixelShuffle x2 stages)
    blocks: int = 16             # residual blocks in the SRResNet trunk
    tile_size: int = 64          # serving: default LR tile side (ONNX metadata; --fixed-tile fixes it in config.pbtxt)
    tile_overlap: int = 8        # serving: default LR overlap between neighbouring tiles
    bicubic_skip: bool = False   # learn a residual on top of bicubic upscaling (the tiny preset's short run)


@dataclass(frozen=True)
class SRTrainConfig(TrainConfig):
    """The generator's loss is content + adv_weight * adversarial (srgan; srresnet: content only)."""

    pixel_loss: str = "mse"      # one of PIXEL_LOSSES: stage 1 (SRResNet) loss, and the pixel term of stage 2
    content_loss: str = "pixel"  # one of CONTENT_LOSSES (srgan): vgg needs vgg_weights; see losses.py
    vgg_weights: str | None = None  # torchvision VGG19 state_dict (.pth) for the vgg content loss
    vgg_layer: str = "relu5_4"   # VGG feature map of the content loss (SRGAN's VGG54)
    content_weight: float = 0.006  # weight of the VGG feature MSE (Ledig et al.: 1/12.75^2 scaling)
    fm_weight: float = 1.0       # weight of D feature matching (content_loss=feature-matching)
    adv_weight: float = 1e-3     # weight of the adversarial term (srgan)


def validate_super_resolution(cfg: RunConfig) -> None:
    m, t = cfg.model, cfg.train
    if m.scale not in (2, 4, 8):
        raise UsageError(f"model.scale must be 2, 4 or 8 (PixelShuffle x2 stages), got {m.scale}")
    if m.channels != 3:
        raise UsageError(f"super-resolution models are RGB: model.channels must be 3, got {m.channels}")
    if m.image_size % m.scale or m.image_size // m.scale < 4:
        raise UsageError(f"model.image_size (the HR crop side) must be a multiple of model.scale with LR "
                         f"crops of at least 4 px, got {m.image_size} at scale {m.scale}")
    if m.blocks < 1 or m.tile_size < 8:
        raise UsageError("model.blocks must be >= 1 and model.tile_size >= 8")
    if not 0 <= m.tile_overlap < m.tile_size // 2:
        raise UsageError(f"model.tile_overlap must be in [0, tile_size / 2), got {m.tile_overlap}")
    if m.family == "srgan" and m.image_size % 16:
        raise UsageError(f"the SRGAN discriminator halves its input four times: model.image_size (the HR "
                         f"crop side) must be a multiple of 16, got {m.image_size}")
    if t.loss == "wgan-gp":
        raise UsageError("the wgan-gp gradient penalty is per sample, which batch norm in the SRGAN "
                         "discriminator breaks; use bce, hinge or lsgan")
    if t.pixel_loss not in PIXEL_LOSSES:
        raise UsageError(f"unknown train.pixel_loss {t.pixel_loss!r}; valid: {', '.join(PIXEL_LOSSES)}")
    if t.content_loss not in CONTENT_LOSSES:
        raise UsageError(f"unknown train.content_loss {t.content_loss!r}; valid: {', '.join(CONTENT_LOSSES)}")
    if t.content_loss == "vgg" and not t.vgg_weights:
        raise UsageError("train.content_loss=vgg needs train.vgg_weights (a torchvision VGG19 state_dict); "
                         "without one use feature-matching or pixel")
    if t.vgg_layer not in VGG19_LAYERS:
        raise UsageError(f"unknown train.vgg_layer {t.vgg_layer!r}; valid: {', '.join(VGG19_LAYERS)}")
    if t.content_loss == "feature-matching" and m.family != "srgan":
        raise UsageError("train.content_loss=feature-matching uses the discriminator: only for model.family=srgan")
    if min(t.content_weight, t.fm_weight, t.adv_weight) < 0:
        raise UsageError("train.content_weight, train.fm_weight and train.adv_weight must be >= 0")


class SRResNetFamily(Family):
    """Super-resolution, stage 1 (Ledig et al. 2017): SRResNet trained with a pixel loss, no D.

    Batches are aligned (LR, HR) crops in [0, 1]; ``sample_inputs`` draws LR crops from the training
    images (the BatchNorm recalibration and the sample grid need real LR images, not noise).
    """

    name = "srresnet"
    kind = "super-resolution"
    model_config = SRModelConfig
    train_config = SRTrainConfig
    datasets = ("sr-builtin", "sr-folder")  # high-resolution photos -> (lr, hr) crop pairs
    checks_mode_collapse = False  # SR output is determined by its input: no sample diversity to lose
    calibration = (16, 16)        # 256 LR crops: enough pixels for per-channel statistics

    @property
    def lr_patch(self) -> int:
        return self.cfg.model.image_size // self.cfg.model.scale

    @classmethod
    def validate_config(cls, cfg: RunConfig) -> None:
        validate_super_resolution(cfg)

    def build_generator(self) -> nn.Module:
        m = self.cfg.model
        return SRResNet(width=m.g_width, scale=m.scale, blocks=m.blocks, bicubic_skip=m.bicubic_skip)

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
        return SRDiscriminator(image_size=self.cfg.model.image_size, width=self.cfg.model.d_width)

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

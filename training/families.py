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
from training.data.images import ImageSet, load_dataset, to_unit_range
from training.data.sr import SRPatchSet, load_sr_dataset
from training.ema import EMA
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
    # integer inputs (INT64), name -> exclusive upper bound of the random ids used to trace and check them
    int_inputs: dict[str, int] = field(default_factory=dict)


class Family:
    name = ""
    kind = ""                     # the model's kind (docs/model-contract.md): what the gateway serves, what evaluate measures
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

    def standing_generator(self, ema: EMA, *, device: torch.device) -> nn.Module:
        """The EMA generator with standing BatchNorm statistics, in eval mode: what is sampled, evaluated
        and exported. The statistics come from ``calibration`` batches of :meth:`sample_inputs` drawn
        with a fixed seed, so one checkpoint always gives the same model."""
        gen = torch.Generator(device=device).manual_seed(12345)
        batch, batches = self.calibration
        ema.recalibrate_batchnorm(lambda: self.sample_inputs(batch, gen=gen, device=device), batches=batches)
        return ema.model.eval()

    def export_parts(self, G: nn.Module) -> list[tuple[str, nn.Module, ExportSpec]]:
        """(name suffix, module, spec) of each ONNX model the export writes, in data-flow order. One part
        (suffix ``""``) is a plain model; several are chained by a Triton ensemble under the plain name."""
        return [("", G, self.export_spec())]


class DCGANFamily(Family):
    """Unconditional DCGAN: z ~ N(0, I) -> image."""

    name = "dcgan"
    kind = "unconditional"

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
    kind = "super-resolution"
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


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def mismatched_indices(classes: torch.Tensor, *, gen: torch.Generator) -> torch.Tensor:
    """For each row i, a random row j != i of another class (GAN-CLS's "wrong text" partner).

    Falls back to the next row (still j != i) when every other row has i's class.
    """
    b = classes.shape[0]
    scores = torch.rand(b, b, generator=gen, device=gen.device).to(classes.device)
    same = classes[:, None] == classes[None, :]  # the diagonal is always "same"
    pick = scores.masked_fill(same, -1.0).argmax(1)
    return torch.where(same.all(1), (torch.arange(b, device=classes.device) + 1) % b, pick)


class GANIntClsFamily(Family):
    """GAN-INT-CLS (Reed et al. 2016): text-conditional DCGAN with the matching-aware discriminator
    (CLS) and manifold interpolation of text embeddings (INT).

    The generator module holds the frozen pre-trained text encoder (``train.text_encoder``, from
    ``ganserve train-text-encoder``); each step embeds the captions it draws.
    D's loss: {real, right text} -> real; {fake, right text} and {real, wrong text} -> fake, each
    weighted 1/2 (their logits are concatenated, so the loss's mean over "fake" does the halving).
    G's loss: fool D on {G(z, t), t} plus ``int_weight`` x the same on interpolated embeddings
    ``beta * t1 + (1 - beta) * t2`` of pairs in the batch (no real image exists for those).
    """

    name = "gan-int-cls"
    kind = "text-conditional"
    calibration = (256, 16)

    # data and networks
    def encoder_config(self):
        from training.models.gan_int_cls import encoder_config

        return encoder_config(self.cfg.model)

    def load_captioned(self):
        from training.data.captions import load_captioned_folder, load_colour_mnist

        d, m = self.cfg.data, self.cfg.model
        if d.name in ("colour-mnist", "colour-digits"):
            return load_colour_mnist(d.path, split=d.split, seed=d.seed, captions_per_image=d.captions,
                                     image_size=m.image_size, limit=d.limit, length=m.max_tokens,
                                     source="mnist" if d.name == "colour-mnist" else "digits",
                                     filler_words=d.filler_words, punctuation=d.punctuation)
        if d.path is None:
            raise UsageError("the captioned-folder data set needs a path: --data DIR (images/ and text/)")
        return load_captioned_folder(d.path, image_size=m.image_size, length=m.max_tokens, limit=d.limit)

    def load_data(self):
        data = self.load_captioned()
        self.pretrained_encoder()  # fail before any training if it is missing or does not fit
        return data

    def pretrained_encoder(self) -> dict:
        from training.text_encoder import load_encoder_file

        path = self.cfg.train.text_encoder
        if not path:
            raise UsageError("gan-int-cls needs a pre-trained text encoder: run `ganserve train-text-encoder "
                             "--data DIR --out ENCODER.pt` first, then --set train.text_encoder=ENCODER.pt")
        return load_encoder_file(path, self.encoder_config())

    def build_generator(self) -> nn.Module:
        from training.models.gan_int_cls import TextToImageGenerator

        G = TextToImageGenerator(self.cfg.model)
        if self.data is not None:  # training: start from the pre-trained encoder (a checkpoint has its own)
            G.encoder.load_state_dict(self.pretrained_encoder()["state_dict"])
        return G

    def build_discriminator(self) -> nn.Module:
        from training.models.gan_int_cls import ConditionalDiscriminator

        return ConditionalDiscriminator(self.cfg.model)

    def batch(self, data, idx, device):
        return {"images": to_unit_range(data.images[idx].to(device, non_blocking=True)),
                "caption_ids": data.caption_ids[idx].to(device), "classes": data.classes[idx].to(device)}

    @torch.no_grad()
    def embed(self, G: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Caption tokens [B, L] -> embeddings [B, E] through G's frozen encoder."""
        return _unwrap(G).embed(tokens)

    # one step
    def d_step(self, *, G, critic, batch, gen, keep_graph):
        real, ids, classes = batch["images"], batch["caption_ids"], batch["classes"]
        b = real.shape[0]
        # one of each image's captions, at random; the "wrong" text is another class's caption
        k = torch.randint(0, ids.shape[1], (b,), generator=gen, device=gen.device).to(ids.device)
        tokens = self.data.tokens[ids[torch.arange(b, device=ids.device), k].cpu()].to(real.device)  # [B, L]
        right = self.embed(G, tokens)  # [B, E]
        wrong_idx = mismatched_indices(classes, gen=gen)
        z = torch.randn(b, self.cfg.model.latent_dim, generator=gen, device=gen.device).to(real.device)
        with torch.set_grad_enabled(keep_graph):
            fake = G(z, right)  # kept with its graph for the G step when this is the last D step
        # (1) update D: {real, right} -> 1; {fake, right} and {real, wrong} -> 0, weighted 1/2 each
        fake_logits = torch.cat([critic(fake.detach(), right), critic(real, right[wrong_idx])])
        return DStepOut(real_logits=critic(real, right), fake_logits=fake_logits, real_images=real,
                        fake_images=fake.detach(), gp_critic=lambda x: critic(x, right),
                        carry={"fake": fake, "right": right, "wrong_idx": wrong_idx})

    def g_loss(self, *, G, critic, batch, adv, gen, carry):
        # (2) update G: fool D with the right text, and (INT) with interpolated texts
        t = self.cfg.train
        fake, right = carry["fake"], carry["right"]
        logits = critic(fake, right)
        loss = adv.g_loss(logits)
        stats = {"d_fake_for_g": logits.detach().mean()}
        if t.int_weight > 0:
            mixed = t.int_beta * right + (1 - t.int_beta) * right[carry["wrong_idx"]]
            z = torch.randn(fake.shape[0], self.cfg.model.latent_dim, generator=gen,
                            device=gen.device).to(fake.device)
            loss_int = adv.g_loss(critic(G(z, mixed), mixed))
            loss = loss + t.int_weight * loss_int
            stats["loss_int"] = loss_int.detach()
        return loss, stats

    # sampling and export
    def sample_prompts(self, n: int, *, seed: int) -> list[str]:
        """Prompts for the sample grid and BatchNorm recalibration. Colour MNIST: row ``i // 10`` is a
        colour, column ``i % 10`` a digit (held-out combinations included), in training phrasings."""
        import numpy as np

        rng = np.random.default_rng(seed)
        if self.cfg.data.name in ("colour-mnist", "colour-digits"):
            from training.data.captions import N_COLOURS, caption

            return [caption(i % 10, (i // 10) % N_COLOURS, rng) for i in range(n)]
        if self.data is None:
            self.data = self.load_captioned()
        return [self.data.captions[int(i)] for i in rng.integers(0, len(self.data.captions), n)]

    def sample_inputs(self, n, *, gen, device):
        from ganserve import text

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device=gen.device))
        tokens = torch.from_numpy(text.encode_batch(self.sample_prompts(n, seed=seed),
                                                    length=self.cfg.model.max_tokens)).to(device)
        return torch.randn(n, self.cfg.model.latent_dim, generator=gen, device=device), tokens

    def render_samples(self, G, inputs):
        return G(*inputs)

    def export_spec(self) -> ExportSpec:
        """The generator's spec (the model's kind); :meth:`export_parts` adds the text encoder."""
        m = self.cfg.model
        return ExportSpec(
            kind="text-conditional-generator",
            inputs={"z": ("batch", m.latent_dim), "embedding": ("batch", m.embedding_dim)},
            outputs={"image": ("batch", m.channels, m.image_size, m.image_size)},
            metadata={"ganserve.latent_dim": str(m.latent_dim), "ganserve.latent_distribution": "normal",
                      "ganserve.value_range": "-1,1", "ganserve.channels": str(m.channels),
                      "ganserve.image_size": str(m.image_size), "ganserve.embedding_dim": str(m.embedding_dim)},
        )

    def encoder_spec(self) -> ExportSpec:
        from ganserve import text

        m = self.cfg.model
        return ExportSpec(
            kind="text-encoder",
            inputs={"tokens": ("batch", m.max_tokens)},
            outputs={"embedding": ("batch", m.embedding_dim)},
            metadata={"ganserve.tokenizer": text.NAME, "ganserve.max_tokens": str(m.max_tokens),
                      "ganserve.embedding_dim": str(m.embedding_dim)},
            int_inputs={"tokens": text.VOCAB_SIZE},
        )

    def export_parts(self, G):
        return [("_encoder", G.encoder, self.encoder_spec()), ("_generator", G.generator, self.export_spec())]


FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (DCGANFamily, SRResNetFamily, SRGANFamily,
                                                                  GANIntClsFamily)}


def get_family(cfg: RunConfig) -> Family:
    try:
        cls = FAMILIES[cfg.model.family]
    except KeyError:
        raise UsageError(f"unknown model family {cfg.model.family!r}; "
                         f"valid families: {', '.join(FAMILIES)}") from None
    return cls(cfg)

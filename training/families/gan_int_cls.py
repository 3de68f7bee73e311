"""GAN-INT-CLS (Reed et al. 2016, "Generative Adversarial Text to Image Synthesis"): text-conditional
DCGAN on captioned images, its config fields and checks, and the pre-training of its text encoder.

The networks are in ``training/models/gan_int_cls.py`` and ``training/models/text_encoder.py``, the
captioned data sets in ``training/data/captions.py``, the metrics in ``training/metrics/text_conditional.py``.

Pre-training (``ganserve train-text-encoder``): image encoder phi and text encoder psi, compatibility
F(v, t) = phi(v) . psi(t) / tau over a batch; the loss is the symmetric, class-structured
cross-entropy: each image should score its own class's texts highest among the batch's texts and each
text its own class's images (the softmax form of DS-SJE's two ranking terms; every text of the same
class counts as a match). On colour MNIST, linear attribute probes (digit, colour) on psi(t) add a
small auxiliary loss, which keeps the two factors linearly separable for unseen combinations.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganserve import text
from ganserve.errors import UsageError
from ganserve.training.config import RunConfig, TrainConfig
from ganserve.training.data.captions import (
    N_COLOURS,
    N_DIGITS,
    CaptionedSet,
    caption,
    heldout_prompts,
    load_captioned_folder,
    load_colour_mnist,
    vocabulary,
)
from ganserve.training.data.images import to_unit_range
from ganserve.training.data.sampler import BatchSampler
from ganserve.training.families.base import DStepOut, ExportSpec, Family
from ganserve.training.families.dcgan import DCGANModelConfig, validate_dcgan_model
from ganserve.training.files import load_onnx, torch_load
from ganserve.training.losses import joint_embedding_loss
from ganserve.training.models.gan_int_cls import ConditionalDiscriminator, TextToImageGenerator
from ganserve.training.models.text_encoder import ImageEncoder, TextEncoder, TextEncoderConfig

ENCODER_VERSION = 1


@dataclass(frozen=True)
class GANIntClsModelConfig(DCGANModelConfig):
    """DCGAN's model fields, plus the char-CNN-RNN text encoder and the embedding compression."""

    family: str = "gan-int-cls"
    channels: int = 3            # RGB only
    max_tokens: int = 64         # L: char-v1 ids per prompt (ganserve.text.DEFAULT_LENGTH)
    text_width: int = 128        # text encoder conv channels and GRU state
    embedding_dim: int = 128     # E: text embedding length
    text_proj_dim: int = 128     # P: FC + LeakyReLU compression of the embedding in G and D
    d_minibatch_std: int = 0     # group size of a minibatch-stddev channel in D (Karras et al. 2018); 0: none


@dataclass(frozen=True)
class GANIntClsTrainConfig(TrainConfig):
    text_encoder: str | None = None  # pre-trained encoder from `ganserve train-text-encoder` (frozen in G)
    int_beta: float = 0.5        # GAN-INT: G also learns on beta * t1 + (1 - beta) * t2 ...
    int_weight: float = 1.0      # ... with this weight on that term of its loss (0 = GAN-CLS)
    int_beta_random: bool = False  # draw beta ~ U(0, 1) per pair instead of the fixed int_beta
    int_shared_batch: bool = False  # G draws the interpolated-text images in the same forward pass as the fakes:
    #                              one set of BatchNorm statistics for both, as at inference (standing statistics
    #                              for every mix), instead of a batch of mixes normalised on its own
    text_noise: float = 0.0      # G's embeddings + N(0, (text_noise x the batch's std per dimension)^2) while
    #                              training (conditioning augmentation); D judges with the clean embedding
    ms_weight: float = 0.0       # mode seeking (Mao et al. 2019): + ms_weight / (|G(z1, t) - G(z2, t)| / |z1 - z2|)
    feature_match_weight: float = 0.0       # feature matching: + feature_match_weight x the squared distance between the mean D image
    #                              features of the fakes (interpolated texts' included) and of the real batch


def validate_text_to_image(cfg: RunConfig) -> None:
    d, m, t = cfg.data, cfg.model, cfg.train
    if m.channels != 3:
        raise UsageError(f"text-to-image models are RGB: model.channels must be 3, got {m.channels}")
    if m.max_tokens < 4 or m.max_tokens % 4:
        raise UsageError(f"model.max_tokens must be a positive multiple of 4, got {m.max_tokens}")
    if min(m.text_width, m.embedding_dim, m.text_proj_dim, d.captions) < 1:
        raise UsageError("model.text_width, model.embedding_dim, model.text_proj_dim and data.captions must be >= 1")
    if not (0 <= d.filler_words <= 1 and 0 <= d.punctuation <= 1):
        raise UsageError(f"data.filler_words and data.punctuation must be in [0, 1], got {d.filler_words}, "
                         f"{d.punctuation}")
    if not 0 <= t.int_beta <= 1 or t.int_weight < 0:
        raise UsageError(f"train.int_beta must be in [0, 1] and train.int_weight >= 0, got {t.int_beta}, {t.int_weight}")
    for key, value in {"train.text_noise": t.text_noise, "train.ms_weight": t.ms_weight,
                       "train.feature_match_weight": t.feature_match_weight, "model.d_minibatch_std": m.d_minibatch_std}.items():
        if value < 0:
            raise UsageError(f"{key} must be >= 0, got {value}")
    if t.loss == "wgan-gp":
        raise UsageError("gan-int-cls uses the matching-aware loss with bce, hinge or lsgan, not wgan-gp")


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

    Options against a generator that ignores z and against blank interpolations (all off by default):
    ``model.d_minibatch_std`` (D sees how varied a batch is), ``train.ms_weight`` (mode seeking: two z,
    one text, G is rewarded for images as far apart as their z), ``train.text_noise`` (noise on G's
    embeddings: nearby embeddings, one class), ``train.int_beta_random`` (GAN-INT over the whole mix, not
    only its midpoint) and ``train.feature_match_weight`` (the fakes' mean D features, interpolations' included, match
    the real batch's: a blank image has none of a digit's features).
    """

    name = "gan-int-cls"
    kind = "text-conditional"
    model_config = GANIntClsModelConfig
    train_config = GANIntClsTrainConfig
    datasets = ("colour-mnist", "colour-digits", "captioned-folder")  # images with captions
    calibration = (256, 16)

    @classmethod
    def validate_config(cls, cfg: RunConfig) -> None:
        validate_dcgan_model(cfg)
        validate_text_to_image(cfg)

    # data and networks
    def encoder_config(self) -> TextEncoderConfig:
        m = self.cfg.model
        return TextEncoderConfig(max_tokens=m.max_tokens, width=m.text_width, embedding_dim=m.embedding_dim)

    def load_captioned(self) -> CaptionedSet:
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
        path = self.cfg.train.text_encoder
        if not path:
            raise UsageError("gan-int-cls needs a pre-trained text encoder: run `ganserve train-text-encoder "
                             "--data DIR --out ENCODER.pt` first, then --set train.text_encoder=ENCODER.pt")
        return load_encoder_file(path, self.encoder_config())

    def build_generator(self) -> nn.Module:
        m = self.cfg.model
        G = TextToImageGenerator(self.encoder_config(), image_size=m.image_size, channels=m.channels,
                                 latent_dim=m.latent_dim, width=m.g_width, proj_dim=m.text_proj_dim)
        if self.data is not None:  # training: start from the pre-trained encoder (a checkpoint has its own)
            G.encoder.load_state_dict(self.pretrained_encoder()["state_dict"])
        return G

    def build_discriminator(self) -> nn.Module:
        m = self.cfg.model
        return ConditionalDiscriminator(image_size=m.image_size, channels=m.channels, width=m.d_width,
                                        embedding_dim=m.embedding_dim, proj_dim=m.text_proj_dim, norm=m.d_norm,
                                        spectral_norm=m.spectral_norm, minibatch_std=m.d_minibatch_std)

    def batch(self, data, idx, device):
        return {"images": to_unit_range(data.images[idx].to(device, non_blocking=True)),
                "caption_ids": data.caption_ids[idx].to(device), "classes": data.classes[idx].to(device)}

    @torch.no_grad()
    def embed(self, G: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        """Caption tokens [B, L] -> embeddings [B, E] through G's frozen encoder."""
        return _unwrap(G).embed(tokens)

    # one step
    def _noisy(self, embedding: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """G's condition: ``embedding`` [B, E] plus ``train.text_noise`` x its batch std per dimension x N(0, 1)."""
        sigma = self.cfg.train.text_noise
        if sigma <= 0:
            return embedding
        noise = torch.randn(embedding.shape, generator=gen, device=gen.device).to(embedding.device)
        return embedding + sigma * embedding.std(0, keepdim=True) * noise

    def _latent(self, b: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        return torch.randn(b, self.cfg.model.latent_dim, generator=gen, device=gen.device).to(device)

    def _interpolation(self, right: torch.Tensor, wrong_idx: torch.Tensor, gen: torch.Generator):
        """GAN-INT's texts ``beta * t1 + (1 - beta) * t2`` [B, E] for each row and its mismatched partner,
        with a z [B, Z] each and G's (noisy) condition [B, E]."""
        t, b = self.cfg.train, right.shape[0]
        beta = torch.rand(b, 1, generator=gen, device=gen.device).to(right.device) if t.int_beta_random else t.int_beta
        mixed = beta * right + (1 - beta) * right[wrong_idx]
        z = self._latent(b, gen, right.device)
        return mixed, z, self._noisy(mixed, gen)

    def d_step(self, *, G, critic, batch, gen, keep_graph):
        real, ids, classes = batch["images"], batch["caption_ids"], batch["classes"]
        b = real.shape[0]
        # one of each image's captions, at random; the "wrong" text is another class's caption
        k = torch.randint(0, ids.shape[1], (b,), generator=gen, device=gen.device).to(ids.device)
        tokens = self.data.tokens[ids[torch.arange(b, device=ids.device), k].cpu()].to(real.device)  # [B, L]
        right = self.embed(G, tokens)  # [B, E]
        wrong_idx = mismatched_indices(classes, gen=gen)
        z = self._latent(b, gen, real.device)
        cond = self._noisy(right, gen)  # G's condition; D judges with the clean embedding
        t = self.cfg.train
        shared = t.int_weight > 0 and t.int_shared_batch
        carry = {"right": right, "wrong_idx": wrong_idx, "z": z, "cond": cond}
        with torch.set_grad_enabled(keep_graph):  # kept with its graph for the G step when this is the last D step
            if shared:  # the fakes and G's interpolated-text images in one pass (one set of BatchNorm statistics)
                mixed, z_int, cond_int = self._interpolation(right, wrong_idx, gen)
                both = G(torch.cat([z, z_int]), torch.cat([cond, cond_int]))
                fake, carry["int"] = both[:b], (both[b:], mixed)
            else:
                fake = G(z, cond)
        carry["fake"] = fake
        # (1) update D: {real, right} -> 1; {fake, right} and {real, wrong} -> 0, weighted 1/2 each
        fake_logits = torch.cat([critic(fake.detach(), right), critic(real, right[wrong_idx])])
        if self.cfg.train.feature_match_weight > 0:
            real_logits, real_features = critic(real, right, True)
            carry["real_features"] = real_features.detach().mean(0)  # [width, base, base]
        else:
            real_logits = critic(real, right)
        return DStepOut(real_logits=real_logits, fake_logits=fake_logits, real_images=real,
                        fake_images=fake.detach(), gp_critic=lambda x: critic(x, right), carry=carry)

    def g_loss(self, *, G, critic, batch, adv, gen, carry):
        # (2) update G: fool D with the right text, and (INT) with interpolated texts
        t = self.cfg.train
        fake, right, z = carry["fake"], carry["right"], carry["z"]
        fm = t.feature_match_weight > 0
        logits, features = critic(fake, right, True) if fm else (critic(fake, right), None)
        loss = adv.g_loss(logits)
        stats = {"d_fake_for_g": logits.detach().mean()}
        fake_features = [features] if fm else []
        if t.ms_weight > 0:  # mode seeking: another z, the same condition, images as far apart as the z
            z2 = self._latent(fake.shape[0], gen, fake.device)
            ratio = (fake - G(z2, carry["cond"])).abs().mean() / (z - z2).abs().mean()
            loss_ms = 1.0 / (ratio + 1e-5)
            loss = loss + t.ms_weight * loss_ms
            stats["loss_ms"] = loss_ms.detach()
        if t.int_weight > 0:
            if "int" in carry:  # drawn with the fakes
                fake_int, mixed = carry["int"]
            else:
                mixed, z_int, cond_int = self._interpolation(right, carry["wrong_idx"], gen)
                fake_int = G(z_int, cond_int)
            logits_int, features_int = critic(fake_int, mixed, True) if fm else (critic(fake_int, mixed), None)
            loss_int = adv.g_loss(logits_int)
            loss = loss + t.int_weight * loss_int
            stats["loss_int"] = loss_int.detach()
            fake_features += [features_int] if fm else []
        if fm:  # the fakes' mean D image features against the real batch's
            loss_fm = ((torch.cat(fake_features).mean(0) - carry["real_features"]) ** 2).mean()
            loss = loss + t.feature_match_weight * loss_fm
            stats["loss_fm"] = loss_fm.detach()
        return loss, stats

    # sampling and export
    def sample_prompts(self, n: int, *, seed: int) -> list[str]:
        """Prompts for the sample grid and BatchNorm recalibration. Colour MNIST: row ``i // 10`` is a
        colour, column ``i % 10`` a digit (held-out combinations included), in training phrasings."""
        rng = np.random.default_rng(seed)
        if self.cfg.data.name in ("colour-mnist", "colour-digits"):
            return [caption(i % 10, (i // 10) % N_COLOURS, rng) for i in range(n)]
        if self.data is None:
            self.data = self.load_captioned()
        return [self.data.captions[int(i)] for i in rng.integers(0, len(self.data.captions), n)]

    def sample_inputs(self, n, *, gen, device):
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
        m = self.cfg.model
        return ExportSpec(
            kind="text-encoder",
            inputs={"tokens": ("batch", m.max_tokens)},
            outputs={"embedding": ("batch", m.embedding_dim)},
            metadata={"ganserve.tokenizer": text.NAME, "ganserve.max_tokens": str(m.max_tokens),
                      "ganserve.embedding_dim": str(m.embedding_dim), **self._vocabulary()},
            int_inputs={"tokens": text.VOCAB_SIZE},
        )

    def _vocabulary(self) -> dict[str, str]:
        """``ganserve.vocabulary`` for data sets whose captions use a known set of words (the colour
        sets); a captioned folder's free text has none."""
        if self.cfg.data.name not in ("colour-mnist", "colour-digits"):
            return {}
        return {"ganserve.vocabulary": json.dumps(vocabulary(), sort_keys=True)}

    def export_parts(self, G):
        return [("_encoder", G.encoder, self.encoder_spec()), ("_generator", G.generator, self.export_spec())]


# ---------------------------------------------------------------- text encoder pre-training
@dataclass(frozen=True)
class PretrainResult:
    encoder: TextEncoder
    steps: int
    wall_time: float
    probe_accuracy: float   # held-out prompts whose digit and colour the probes read correctly
    description: str


def pretrain(data, cfg: TextEncoderConfig, *, steps: int = 1500, batch_size: int = 128, lr: float = 1e-3,
             seed: int = 0, log_every: int = 100, log=print) -> PretrainResult:
    """Joint image-text embedding pre-training on a :class:`ganserve.training.data.captions.CaptionedSet`."""
    torch.manual_seed(seed)
    enc, img = TextEncoder(cfg), ImageEncoder(cfg.embedding_dim)
    probes = nn.ModuleDict({k: nn.Linear(cfg.embedding_dim, int(v.max()) + 1) for k, v in data.attributes.items()})
    params = [*enc.parameters(), *img.parameters(), *probes.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    sampler = BatchSampler(len(data), batch_size=batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        idx = sampler.next_indices()
        k = torch.randint(0, data.caption_ids.shape[1], (len(idx),), generator=g)
        tokens = data.tokens[data.caption_ids[idx, k]]
        t = enc(tokens)
        loss = joint_embedding_loss(img(to_unit_range(data.images[idx])), t, data.classes[idx])
        aux = sum((F.cross_entropy(probes[name](t), values[idx]) for name, values in data.attributes.items()),
                  torch.zeros(()))
        opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        opt.step()
        if step % log_every == 0 or step == steps:
            log(f"text encoder step {step}/{steps}: joint loss {loss.item():.3f}, probes {aux.item():.3f}, "
                f"{time.perf_counter() - started:.0f}s")
    enc.eval()
    return PretrainResult(enc, steps, time.perf_counter() - started, _probe_accuracy(enc, probes, data),
                          data.description)


@torch.no_grad()
def _probe_accuracy(enc: TextEncoder, probes: nn.ModuleDict, data) -> float:
    """Fraction of held-out prompts (all combinations, seen or not) whose every attribute the probes read
    correctly from the embedding; NaN for sets without attributes."""
    if not data.attributes:
        return float("nan")
    prompts, truth = [], []
    for d in range(N_DIGITS):
        for c in range(N_COLOURS):
            prompts += heldout_prompts(d, c, 4, seed=1)
            truth += [(d, c)] * 4
    e = enc(torch.from_numpy(text.encode_batch(prompts, length=enc.cfg.max_tokens)))
    pred = torch.stack([probes["digit"](e).argmax(1), probes["colour"](e).argmax(1)], 1)
    return float((pred == torch.tensor(truth)).all(1).float().mean())


def save_encoder(result: PretrainResult, path: str | Path, *, meta: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"version": ENCODER_VERSION, "config": asdict(result.encoder.cfg),
                "state_dict": result.encoder.state_dict(), "steps": result.steps,
                "wall_time": result.wall_time, "probe_accuracy": result.probe_accuracy,
                "data": result.description, "meta": meta or {}}, path)
    return path


def load_encoder_file(path: str | Path, cfg: TextEncoderConfig) -> dict:
    """The saved encoder at ``path``, checked against the architecture ``cfg``."""
    saved = torch_load(path, what="text encoder", expected="a file written by `ganserve train-text-encoder`")
    if not isinstance(saved, dict) or saved.get("version") != ENCODER_VERSION:
        raise UsageError(f"{path} is not a ganserve text encoder (version {ENCODER_VERSION})")
    if TextEncoderConfig(**saved["config"]) != cfg:
        raise UsageError(f"text encoder {path} has architecture {saved['config']}, the model config needs "
                         f"{asdict(cfg)}; pre-train it with the same preset")
    return saved


def encoder_from_onnx(path: str | Path, cfg: TextEncoderConfig) -> PretrainResult:
    """The text encoder exported at ``path`` (a ``text-encoder`` ONNX model written by ``ganserve
    export``) back as a :class:`TextEncoder` with exactly its weights, so a generator can be retrained
    against a shipped encoder's embedding space. The export keeps the module names of every
    initializer except the GRU's, which ONNX stores as W, R, B with the gates in (z, r, h) order where
    PyTorch has (r, z, n); the biases are the input and hidden ones concatenated."""
    from onnx import numpy_helper

    proto = load_onnx(path)
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("ganserve.kind") != "text-encoder":
        raise UsageError(f"{path} is not an exported text encoder (ganserve.kind {meta.get('ganserve.kind')!r})")
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in proto.graph.initializer}
    gru = next((n for n in proto.graph.node if n.op_type == "GRU"), None)
    if gru is None:
        raise UsageError(f"{path} has no GRU: not the char-CNN-RNN text encoder")

    def gates(x: torch.Tensor) -> torch.Tensor:  # (z, r, h) blocks along dim 0 -> (r, z, n)
        z, r, h = x.chunk(3)
        return torch.cat([r, z, h])

    w, r, b = (weights.pop(name)[0] for name in gru.input[1:4])
    b_ih, b_hh = b.chunk(2)
    weights.update({"rnn.weight_ih_l0": gates(w), "rnn.weight_hh_l0": gates(r), "rnn.bias_ih_l0": gates(b_ih),
                    "rnn.bias_hh_l0": gates(b_hh)})
    enc = TextEncoder(cfg)
    try:
        enc.load_state_dict(weights)
    except RuntimeError as exc:
        raise UsageError(f"{path} does not fit the text encoder architecture {asdict(cfg)}: {exc}") from None
    return PretrainResult(enc.eval(), int(meta.get("ganserve.training_steps", 0)), 0.0, float("nan"),
                          meta.get("ganserve.training_data", "unknown"))

"""Typed, frozen configuration for a training run, and named presets.

A run is described by one :class:`RunConfig` (data + model + training). Presets give sensible
starting points per family; any field can be overridden with ``section.field=value`` strings
(``ganserve train --set train.lr_d=4e-4``), validated here with messages that name the valid choices.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

from ganserve.errors import UsageError

LOSSES = ("bce", "hinge", "lsgan", "wgan-gp")
DATASETS = ("mnist", "image-folder", "digits", "sr-builtin", "sr-folder", "colour-mnist", "colour-digits",
            "captioned-folder")
SR_DATASETS = ("sr-builtin", "sr-folder")  # high-resolution photos -> (lr, hr) crop pairs
SR_FAMILIES = ("srresnet", "srgan")
# images with captions (training/data/captions.py): colour MNIST (colour-digits: from scikit-learn's
# 8x8 digits, for tests) and the CUB-200-2011 / Oxford-102 folder layout
CAPTIONED_DATASETS = ("colour-mnist", "colour-digits", "captioned-folder")
TEXT_FAMILIES = ("gan-int-cls",)
NORMS = ("batch", "layer", "none")
PIXEL_LOSSES = ("mse", "l1")
CONTENT_LOSSES = ("pixel", "vgg", "feature-matching")
VGG_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_4")


@dataclass(frozen=True)
class DataConfig:
    name: str = "mnist"          # one of DATASETS
    path: str | None = None      # folder with the data set (mnist: the IDX files; image-folder: images)
    split: str = "train"         # mnist: train | test
    limit: int | None = None     # use only the first N examples (tiny runs and tests)
    captions: int = 5            # colour-mnist: captions drawn per image
    seed: int = 0                # colour-mnist: seed of the colours, jitter and captions
    filler_words: float = 0.0    # colour-mnist: share of captions with 1-3 random filler words inserted
    punctuation: float = 0.0     # colour-mnist: chance of a random , : . ; ! after each caption word


@dataclass(frozen=True)
class ModelConfig:
    family: str = "dcgan"        # registry name, see training.families
    image_size: int = 28         # output side; must be 4*2^k or 7*2^k for DCGAN. Super-resolution: the
    #                              side of the HR training crops (D's input); LR crops are image_size / scale
    channels: int = 1            # 1 (grey) or 3 (RGB)
    latent_dim: int = 100        # length of z
    g_width: int = 64            # generator width at the last hidden layer (ngf in the paper's code)
    d_width: int = 64            # discriminator width at the first layer (ndf)
    d_norm: str = "batch"        # normalisation in D's hidden layers: batch | layer | none
    spectral_norm: bool = False  # spectral normalisation on D's weights (Miyato et al. 2018)
    # super-resolution (srresnet, srgan): g_width is the trunk width, d_width D's first width
    scale: int = 4               # upscaling factor: 2, 4 or 8 (PixelShuffle x2 stages)
    blocks: int = 16             # residual blocks in the SRResNet trunk
    tile_size: int = 64          # serving: LR tile side fixed in config.pbtxt (Triton batches tiles)
    tile_overlap: int = 8        # serving: default LR overlap between neighbouring tiles
    # text-conditional (gan-int-cls): the char-CNN-RNN text encoder and the embedding compression
    max_tokens: int = 64         # L: char-v1 ids per prompt (ganserve.text.DEFAULT_LENGTH)
    text_width: int = 128        # text encoder conv channels and GRU state
    embedding_dim: int = 128     # E: text embedding length
    text_proj_dim: int = 128     # P: FC + LeakyReLU compression of the embedding in G and D


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10_000          # generator updates
    batch_size: int = 128
    loss: str = "bce"            # one of LOSSES; bce is the non-saturating loss of Goodfellow et al.
    lr_g: float = 2e-4           # Adam learning rates; lr_d != lr_g is the TTUR of Heusel et al. 2017
    lr_d: float = 2e-4
    beta1: float = 0.5           # DCGAN paper: 0.5 (0.9 oscillates)
    beta2: float = 0.999
    d_steps: int = 1             # D updates per G update
    label_smoothing: float = 0.0  # one-sided: real target 1 - s for D (bce, lsgan only)
    instance_noise: float = 0.0  # std of Gaussian noise on D's inputs at step 0 ...
    instance_noise_steps: int = 0  # ... annealed linearly to 0 over this many steps
    gp_weight: float = 10.0      # gradient penalty weight (wgan-gp)
    ema_decay: float = 0.999     # EMA of G's weights; 0 disables (then G itself is exported)
    ema_start: int = 0           # copy G into the EMA before this step, average after it
    # super-resolution: the generator's loss is content + adv_weight * adversarial
    pixel_loss: str = "mse"      # one of PIXEL_LOSSES: stage 1 (SRResNet) loss, and the pixel term of stage 2
    content_loss: str = "pixel"  # one of CONTENT_LOSSES (srgan): vgg needs vgg_weights; see losses.py
    vgg_weights: str | None = None  # torchvision VGG19 state_dict (.pth) for the vgg content loss
    vgg_layer: str = "relu5_4"   # VGG feature map of the content loss (SRGAN's VGG54)
    content_weight: float = 0.006  # weight of the VGG feature MSE (Ledig et al.: 1/12.75^2 scaling)
    fm_weight: float = 1.0       # weight of D feature matching (content_loss=feature-matching)
    adv_weight: float = 1e-3     # weight of the adversarial term (srgan)
    init_from: str | None = None  # checkpoint whose EMA generator initialises G (SRGAN from SRResNet)
    # text-conditional (gan-int-cls)
    text_encoder: str | None = None  # pre-trained encoder from `ganserve train-text-encoder` (frozen in G)
    int_beta: float = 0.5        # GAN-INT: G also learns on beta * t1 + (1 - beta) * t2 ...
    int_weight: float = 1.0      # ... with this weight on that term of its loss (0 = GAN-CLS)
    seed: int = 0
    device: str = "cpu"          # cpu | cuda | cuda:N (under torchrun each rank takes its local GPU)
    log_every: int = 50          # steps between JSONL lines / progress updates
    sample_every: int = 500      # steps between sample grids and loss curves
    checkpoint_every: int = 1000  # steps between checkpoints (plus one at the end and on Ctrl-C)
    sample_grid: int = 64        # images in the sample grid (fixed z)
    # failure detection
    stop_on_failure: bool = False  # stop (raise) instead of warn when a detector fires
    d_collapse_loss: float = 0.02  # D loss below this ...
    d_collapse_window: int = 200   # ... for this many consecutive steps -> D has collapsed G's signal
    mode_collapse_ratio: float = 0.2  # sample diversity / real-data diversity below this -> mode collapse
    mode_collapse_after: int = 1000   # ... checked from this step on (early G is near-constant anyway)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Configs saved by older versions lack newer fields: those take their defaults."""
        return cls(data=DataConfig(**d["data"]), model=ModelConfig(**d["model"]),
                   train=TrainConfig(**d["train"]))


PRESETS: dict[str, RunConfig] = {
    # DCGAN on full MNIST at its native 28x28.
    "dcgan-mnist": RunConfig(
        data=DataConfig(name="mnist"),
        model=ModelConfig(image_size=28, channels=1, latent_dim=100, g_width=64, d_width=64),
        train=TrainConfig(steps=20_000, batch_size=128),
    ),
    # DCGAN on a folder of RGB images at 64x64, the paper's setting.
    "dcgan-folder64": RunConfig(
        data=DataConfig(name="image-folder"),
        model=ModelConfig(image_size=64, channels=3, latent_dim=100, g_width=64, d_width=64),
        train=TrainConfig(steps=20_000, batch_size=128),
    ),
    # Seconds-long smoke run on scikit-learn's bundled 8x8 digits.
    "dcgan-digits-tiny": RunConfig(
        data=DataConfig(name="digits"),
        model=ModelConfig(image_size=8, channels=1, latent_dim=16, g_width=16, d_width=16),
        train=TrainConfig(steps=20, batch_size=32, log_every=5, sample_every=10, checkpoint_every=10,
                          sample_grid=16),
    ),
    # SRResNet (Ledig et al. 2017), stage 1: pixel loss, x4, on the offline photo set. Sized for a CPU
    # (or a short GPU) run; the paper trains 16 blocks on 96x96 HR crops, batch 16, lr 1e-4.
    "srresnet-x4": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=ModelConfig(family="srresnet", channels=3, scale=4, blocks=16, g_width=64, image_size=96),
        train=TrainConfig(steps=20_000, batch_size=16, lr_g=1e-4, lr_d=1e-4, beta1=0.9, beta2=0.999,
                          pixel_loss="mse", ema_decay=0.999, log_every=50, sample_every=1000,
                          checkpoint_every=500, sample_grid=8),
    ),
    # The shipped x4 model, sized for a 2-core CPU in under an hour: 8 blocks of width 32, L1 loss
    # (faster early PSNR gains than MSE), a higher learning rate and a short EMA to match the short run.
    "srresnet-x4-cpu": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=ModelConfig(family="srresnet", channels=3, scale=4, blocks=8, g_width=32, d_width=16,
                          image_size=96),
        train=TrainConfig(steps=4_000, batch_size=16, lr_g=5e-4, lr_d=1e-4, beta1=0.9, beta2=0.999,
                          pixel_loss="l1", ema_decay=0.99, log_every=20, sample_every=500,
                          checkpoint_every=100, sample_grid=8),
    ),
    "srresnet-x2": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=ModelConfig(family="srresnet", channels=3, scale=2, blocks=16, g_width=64, image_size=64),
        train=TrainConfig(steps=20_000, batch_size=16, lr_g=1e-4, lr_d=1e-4, beta1=0.9, beta2=0.999,
                          pixel_loss="mse", ema_decay=0.999, log_every=50, sample_every=1000,
                          checkpoint_every=500, sample_grid=8),
    ),
    # SRGAN, stage 2: adversarial (1e-3) + content loss, G initialised from an SRResNet checkpoint
    # (--set train.init_from=runs/srresnet/checkpoint.pt). Without VGG19 weights the content loss is
    # the pixel loss plus feature matching on D (see training/losses.py).
    "srgan-x4": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=ModelConfig(family="srgan", channels=3, scale=4, blocks=16, g_width=64, d_width=64,
                          image_size=96),
        train=TrainConfig(steps=5_000, batch_size=16, loss="bce", lr_g=1e-4, lr_d=1e-4, beta1=0.9,
                          beta2=0.999, pixel_loss="mse", content_loss="feature-matching", adv_weight=1e-3,
                          ema_decay=0.999, log_every=50, sample_every=500, checkpoint_every=500,
                          sample_grid=8),
    ),
    # Stage 2 for srresnet-x4-cpu's generator, sized for a CPU: a narrow discriminator (d_width 16) and a
    # short run; the pixel term keeps the output close to the SRResNet's, feature matching on D
    # (weight 0.1) stands in for the VGG loss without VGG19 weights.
    "srgan-x4-cpu": RunConfig(
        data=DataConfig(name="sr-builtin"),
        model=ModelConfig(family="srgan", channels=3, scale=4, blocks=8, g_width=32, d_width=16,
                          image_size=96),
        train=TrainConfig(steps=400, batch_size=16, loss="bce", lr_g=1e-4, lr_d=1e-4, beta1=0.9,
                          beta2=0.999, pixel_loss="l1", content_loss="feature-matching", fm_weight=0.1,
                          adv_weight=1e-3, ema_decay=0.99, log_every=10, sample_every=100,
                          checkpoint_every=50, sample_grid=8),
    ),
    # GAN-INT-CLS (Reed et al. 2016) on captioned colour MNIST, 28x28 RGB, sized for a 2-core CPU (about
    # 0.33 s per step). First `ganserve train-text-encoder --data DIR --out runs/text2img-encoder.pt
    # --steps 3000`, then `ganserve train --preset text2img-colour-mnist --data DIR
    # --set train.text_encoder=runs/text2img-encoder.pt` (model_repository/text2img/README.md).
    "text2img-colour-mnist": RunConfig(
        data=DataConfig(name="colour-mnist", filler_words=0.7, punctuation=0.15),
        model=ModelConfig(family="gan-int-cls", image_size=28, channels=3, latent_dim=100, g_width=64, d_width=64),
        train=TrainConfig(steps=4_000, batch_size=64, loss="bce", lr_g=2e-4, lr_d=2e-4, beta1=0.5,
                          ema_decay=0.999, log_every=50, sample_every=500, checkpoint_every=250,
                          sample_grid=90),  # every (digit, colour): a row per colour, a column per digit
    ),
    # Seconds-long smoke run on colour-digits (scikit-learn's digits, coloured and captioned).
    "text2img-tiny": RunConfig(
        data=DataConfig(name="colour-digits", captions=2),
        model=ModelConfig(family="gan-int-cls", image_size=8, channels=3, latent_dim=8, g_width=8, d_width=8,
                          text_width=16, embedding_dim=16, text_proj_dim=8),
        train=TrainConfig(steps=6, batch_size=16, log_every=2, sample_every=3, checkpoint_every=3,
                          sample_grid=16),
    ),
    # Seconds-long smoke run: x2, 2 blocks of width 16, on the offline photo set.
    "srresnet-tiny": RunConfig(
        data=DataConfig(name="sr-builtin", limit=3),
        model=ModelConfig(family="srresnet", channels=3, scale=2, blocks=2, g_width=16, d_width=8,
                          image_size=16),
        train=TrainConfig(steps=20, batch_size=4, lr_g=1e-4, lr_d=1e-4, beta1=0.9, log_every=5,
                          sample_every=10, checkpoint_every=10, sample_grid=4),
    ),
}


def preset(name: str) -> RunConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None


def _coerce(raw: str, typ: typing.Any, key: str) -> typing.Any:
    args = typing.get_args(typ)
    if type(None) in args:  # Optional[X]
        if raw.lower() in {"none", "null", ""}:
            return None
        typ = next(a for a in args if a is not type(None))
    try:
        if typ is bool:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError
        if typ is int:
            value = float(raw)  # accepts 2e4 as well as 20000
            if not value.is_integer():
                raise ValueError
            return int(value)
        if typ is float:
            return float(raw)
        return str(raw)
    except ValueError:
        raise UsageError(f"{key}={raw!r}: expected a value of type {getattr(typ, '__name__', typ)}") from None


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` overrides, e.g. ``train.lr_d=4e-4``."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise UsageError(f"override {item!r} must look like section.field=value "
                             f"(sections: {', '.join(sections)})")
        if section not in sections:
            raise UsageError(f"unknown section {section!r} in {item!r}; valid sections: {', '.join(sections)}")
        sub = sections[section]
        hints = typing.get_type_hints(type(sub))
        if name not in hints:
            raise UsageError(f"unknown field {section}.{name}; valid fields: "
                             f"{', '.join(f.name for f in dataclasses.fields(sub))}")
        sections[section] = dataclasses.replace(sub, **{name: _coerce(raw.strip(), hints[name], key)})
    return RunConfig(**sections)


def validate(cfg: RunConfig) -> RunConfig:
    """Reject impossible or contradictory settings with one clear message."""
    d, m, t = cfg.data, cfg.model, cfg.train
    if d.name not in DATASETS:
        raise UsageError(f"unknown data set {d.name!r}; valid data sets: {', '.join(DATASETS)}")
    if t.loss not in LOSSES:
        raise UsageError(f"unknown loss {t.loss!r}; valid losses: {', '.join(LOSSES)}")
    if m.d_norm not in NORMS:
        raise UsageError(f"unknown model.d_norm {m.d_norm!r}; valid: {', '.join(NORMS)}")
    if m.channels not in (1, 3):
        raise UsageError(f"model.channels must be 1 or 3, got {m.channels}")
    positive = {"train.steps": t.steps, "train.batch_size": t.batch_size, "train.d_steps": t.d_steps,
                "train.log_every": t.log_every, "train.sample_every": t.sample_every,
                "train.checkpoint_every": t.checkpoint_every, "model.latent_dim": m.latent_dim,
                "model.g_width": m.g_width, "model.d_width": m.d_width, "train.sample_grid": t.sample_grid}
    for key, value in positive.items():
        if value <= 0:
            raise UsageError(f"{key} must be positive, got {value}")
    for key, value in {"train.lr_g": t.lr_g, "train.lr_d": t.lr_d}.items():
        if not 0 < value < 1:
            raise UsageError(f"{key} must be in (0, 1), got {value}")
    for key, value in {"train.beta1": t.beta1, "train.beta2": t.beta2, "train.ema_decay": t.ema_decay}.items():
        if not 0 <= value < 1:
            raise UsageError(f"{key} must be in [0, 1), got {value}")
    if not 0 <= t.label_smoothing < 0.5:
        raise UsageError(f"train.label_smoothing must be in [0, 0.5), got {t.label_smoothing}")
    if t.label_smoothing and t.loss not in ("bce", "lsgan"):
        raise UsageError(f"train.label_smoothing applies to the bce and lsgan losses, not {t.loss!r}")
    if t.instance_noise < 0 or t.instance_noise_steps < 0:
        raise UsageError("train.instance_noise and train.instance_noise_steps must be >= 0")
    if t.loss == "wgan-gp" and m.d_norm == "batch":
        raise UsageError("the wgan-gp gradient penalty is per sample, which batch norm in D breaks; "
                         "set model.d_norm=layer (or none)")
    if d.limit is not None and d.limit <= 0:
        raise UsageError(f"data.limit must be positive, got {d.limit}")
    if (m.family in SR_FAMILIES) != (d.name in SR_DATASETS):
        raise UsageError(f"model.family={m.family} cannot train on data.name={d.name}: the super-resolution "
                         f"families ({', '.join(SR_FAMILIES)}) need one of {', '.join(SR_DATASETS)}, "
                         "the others need an image set")
    if (m.family in TEXT_FAMILIES) != (d.name in CAPTIONED_DATASETS):
        raise UsageError(f"model.family={m.family} cannot train on data.name={d.name}: the text-conditional "
                         f"families ({', '.join(TEXT_FAMILIES)}) need one of {', '.join(CAPTIONED_DATASETS)}, "
                         "the others need images without captions")
    if m.family in SR_FAMILIES:
        _validate_sr(cfg)
    if m.family in TEXT_FAMILIES:
        _validate_text(cfg)
    return cfg


def _validate_text(cfg: RunConfig) -> None:
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
    if t.loss == "wgan-gp":
        raise UsageError("gan-int-cls uses the matching-aware loss with bce, hinge or lsgan, not wgan-gp")


def _validate_sr(cfg: RunConfig) -> None:
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
    if t.pixel_loss not in PIXEL_LOSSES:
        raise UsageError(f"unknown train.pixel_loss {t.pixel_loss!r}; valid: {', '.join(PIXEL_LOSSES)}")
    if t.content_loss not in CONTENT_LOSSES:
        raise UsageError(f"unknown train.content_loss {t.content_loss!r}; valid: {', '.join(CONTENT_LOSSES)}")
    if t.content_loss == "vgg" and not t.vgg_weights:
        raise UsageError("train.content_loss=vgg needs train.vgg_weights (a torchvision VGG19 state_dict); "
                         "without one use feature-matching or pixel")
    if t.vgg_layer not in VGG_LAYERS:
        raise UsageError(f"unknown train.vgg_layer {t.vgg_layer!r}; valid: {', '.join(VGG_LAYERS)}")
    if t.content_loss == "feature-matching" and m.family != "srgan":
        raise UsageError("train.content_loss=feature-matching uses the discriminator: only for model.family=srgan")
    if min(t.content_weight, t.fm_weight, t.adv_weight) < 0:
        raise UsageError("train.content_weight, train.fm_weight and train.adv_weight must be >= 0")

"""The schema of a training run's configuration: typed, frozen dataclasses and their overrides.

A run is one :class:`RunConfig`: ``data`` + ``model`` + ``train``. :class:`ModelConfig` and
:class:`TrainConfig` hold what every family has; each family extends them with its own fields in
``training/families/<family>.py`` (the super-resolution ``model.scale``, the text-to-image
``train.text_encoder``, ...), so a field is spelt ``section.field`` whichever class holds it:
``ganserve train --set train.lr_d=4e-4 --set model.scale=2``. Named presets are data, in
``training/presets.py``; the steps that need the family registry (switching ``model.family``, reading
a saved config, a family's own validation) are in ``training/families/__init__.py``.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass

from ganserve.errors import UsageError

LOSSES = ("bce", "hinge", "lsgan", "wgan-gp")
# images (training/data/images.py), high-resolution photos (data/sr.py), captioned images (data/captions.py;
# colour-digits: from scikit-learn's 8x8 digits, for tests); each family lists those it trains on
DATASETS = ("mnist", "image-folder", "digits", "sr-builtin", "sr-folder", "colour-mnist", "colour-digits",
            "captioned-folder")


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
    """What every family's model has; each family's config extends it."""

    family: str = "dcgan"        # registry name, see ganserve.training.families
    image_size: int = 28         # output side (DCGAN: 4*2^k or 7*2^k). Super-resolution: the side of
    #                              the HR training crops (D's input); LR crops are image_size / scale
    channels: int = 1            # 1 (grey) or 3 (RGB)
    g_width: int = 64            # generator width (DCGAN: at the last hidden layer, ngf; SRResNet: the trunk)
    d_width: int = 64            # discriminator width at the first layer (ndf)


@dataclass(frozen=True)
class TrainConfig:
    """What every family's training has; a family may extend it (e.g. the super-resolution losses)."""

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
    init_from: str | None = None  # checkpoint whose EMA generator initialises G (SRGAN from SRResNet)
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
    data: DataConfig
    model: ModelConfig           # the family's own subclass (ganserve.training.families.<family>)
    train: TrainConfig           # idem

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, *, model: type[ModelConfig], train: type[TrainConfig]) -> RunConfig:
        """The config saved as ``d`` (a checkpoint's ``config``), with the family's section classes.

        Older configs lack newer fields: those take their defaults. Configs saved before each family
        had its own classes hold every family's fields in one flat section: the other families' are
        dropped."""
        def build(section: type, values: dict):
            names = {f.name for f in dataclasses.fields(section)}
            return section(**{k: v for k, v in values.items() if k in names})

        return cls(data=build(DataConfig, d["data"]), model=build(model, d["model"]), train=build(train, d["train"]))


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


def override_fields(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` overrides, e.g. ``train.lr_d=4e-4``, to the fields of ``cfg``'s own
    section classes. (``model.family=...`` changes those classes: see ``ganserve.training.families.apply_overrides``.)"""
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


def validate_shared(cfg: RunConfig) -> None:
    """Reject impossible or contradictory values of the shared fields, with one clear message each
    (a family checks its own fields: ``Family.validate_config``)."""
    d, m, t = cfg.data, cfg.model, cfg.train
    if d.name not in DATASETS:
        raise UsageError(f"unknown data set {d.name!r}; valid data sets: {', '.join(DATASETS)}")
    if t.loss not in LOSSES:
        raise UsageError(f"unknown loss {t.loss!r}; valid losses: {', '.join(LOSSES)}")
    if m.channels not in (1, 3):
        raise UsageError(f"model.channels must be 1 or 3, got {m.channels}")
    positive = {"train.steps": t.steps, "train.batch_size": t.batch_size, "train.d_steps": t.d_steps,
                "train.log_every": t.log_every, "train.sample_every": t.sample_every,
                "train.checkpoint_every": t.checkpoint_every, "model.g_width": m.g_width,
                "model.d_width": m.d_width, "train.sample_grid": t.sample_grid}
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
    if d.limit is not None and d.limit <= 0:
        raise UsageError(f"data.limit must be positive, got {d.limit}")

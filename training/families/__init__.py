"""The generator families, registered by name (``model.family``), and the config steps that need them.

| family        | kind               | module                                   |
| ------------- | ------------------ | ---------------------------------------- |
| `dcgan`       | `unconditional`    | ``training/families/dcgan.py``           |
| `srresnet`    | `super-resolution` | ``training/families/srgan.py`` (stage 1) |
| `srgan`       | `super-resolution` | ``training/families/srgan.py`` (stage 2) |
| `gan-int-cls` | `text-conditional` | ``training/families/gan_int_cls.py``     |
| `lapgan`      | `unconditional`    | ``training/families/lapgan.py`` (a pyramid ensemble) |

A new family is a :class:`~ganserve.training.families.base.Family` subclass in its own module, added to
:data:`FAMILIES` below. Each family owns its config classes (``model_config``, ``train_config``), so
``--set model.scale=2`` or ``--set train.text_encoder=...`` exist only for the families that have them;
:func:`apply_overrides` switches those classes when ``model.family`` changes, and :func:`config_from_dict`
reads a saved config back into them.
"""

from __future__ import annotations

import dataclasses

from ganserve.errors import UsageError
from ganserve.training.config import RunConfig, override_fields, validate_shared
from ganserve.training.families.base import Family
from ganserve.training.families.dcgan import DCGANFamily
from ganserve.training.families.gan_int_cls import GANIntClsFamily
from ganserve.training.families.lapgan import LapGANFamily
from ganserve.training.families.srgan import SRGANFamily, SRResNetFamily

FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in (DCGANFamily, SRResNetFamily, SRGANFamily,
                                                                  GANIntClsFamily, LapGANFamily)}


def family_class(name: str) -> type[Family]:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UsageError(f"unknown model family {name!r}; valid families: {', '.join(FAMILIES)}") from None


def get_family(cfg: RunConfig) -> Family:
    return family_class(cfg.model.family)(cfg)


def config_from_dict(d: dict) -> RunConfig:
    """A saved config (a checkpoint's ``config``, a run's ``config.json``) in its family's classes."""
    cls = family_class(d["model"].get("family", "dcgan"))
    return RunConfig.from_dict(d, model=cls.model_config, train=cls.train_config)


def _with_family(cfg: RunConfig, name: str) -> RunConfig:
    """``cfg`` with ``model.family=name``: the shared fields kept, the new family's own at their defaults."""
    cls = family_class(name)

    def convert(section, target: type, **changes):
        names = {f.name for f in dataclasses.fields(target)}
        kept = {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name in names}
        return target(**{**kept, **changes})

    return RunConfig(data=cfg.data, model=convert(cfg.model, cls.model_config, family=name),
                     train=convert(cfg.train, cls.train_config))


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` overrides, e.g. ``train.lr_d=4e-4``. A ``model.family=...``
    override is applied first, whatever its position, so the other overrides may name that family's fields."""
    family = [item for item in overrides if item.partition("=")[0].strip() == "model.family"]
    for item in family:
        cfg = _with_family(cfg, item.partition("=")[2].strip())
    return override_fields(cfg, [item for item in overrides if item not in family])


def validate(cfg: RunConfig) -> RunConfig:
    """Reject impossible or contradictory settings with one clear message: the shared fields, the
    data set (one the family trains on), then the family's own fields."""
    cls = family_class(cfg.model.family)
    if not (isinstance(cfg.model, cls.model_config) and isinstance(cfg.train, cls.train_config)):
        raise TypeError(f"a {cls.name} config needs {cls.model_config.__name__} and {cls.train_config.__name__} "
                        f"sections, not {type(cfg.model).__name__} and {type(cfg.train).__name__}")
    validate_shared(cfg)
    if cfg.data.name not in cls.datasets:
        raise UsageError(f"model.family={cls.name} cannot train on data.name={cfg.data.name}: it trains on "
                         f"{', '.join(cls.datasets)}")
    cls.validate_config(cfg)
    return cfg


__all__ = ["FAMILIES", "Family", "apply_overrides", "config_from_dict", "family_class", "get_family", "validate"]

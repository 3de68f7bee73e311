"""Reading what ``ganserve train`` writes: the one way to open a checkpoint, rebuild its generator and
tell a model's kind.

A checkpoint is a versioned dict (``torch.save``, read back with ``weights_only``): ``version``,
``step``, ``wall_time``, ``meta`` (command, machine, commit, data), ``config`` (the run's config as a
dict), the state dicts of ``G``, ``D``, ``ema`` and both optimisers, the random states and the
sampler's position. :class:`ganserve.training.loop.Trainer` writes it; everything else reads it through here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.config import RunConfig
from ganserve.training.ema import EMA
from ganserve.training.families import Family, config_from_dict, get_family
from ganserve.training.files import torch_load

CHECKPOINT_VERSION = 1


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``; :class:`UsageError` if it is missing or not a ganserve checkpoint."""
    ckpt = torch_load(path, what="checkpoint", expected="a checkpoint.pt written by ganserve train")
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise UsageError(f"{path} is not a ganserve checkpoint (version {CHECKPOINT_VERSION})")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any]) -> RunConfig:
    """The run config stored in a checkpoint (older ones lack newer fields: those take their defaults)."""
    return config_from_dict(ckpt["config"])


@dataclass(frozen=True)
class LoadedGenerator:
    family: Family
    model: nn.Module          # EMA generator, eval mode, standing BN statistics
    checkpoint: dict


def load_generator(path: str | Path) -> LoadedGenerator:
    """Rebuild the family's generator from a checkpoint, with the EMA weights and the standing
    BatchNorm statistics the training loop's own sampling uses (:meth:`Family.standing_generator`)."""
    ckpt = read_checkpoint(path)
    cfg = checkpoint_config(ckpt)
    family = get_family(cfg)
    ema = EMA(family.build_generator(), decay=cfg.train.ema_decay)
    ema.load_state_dict(ckpt["ema"])
    return LoadedGenerator(family, family.standing_generator(ema, device=torch.device("cpu")), ckpt)


def initial_generator_weights(path: str | Path, G: nn.Module) -> dict[str, torch.Tensor]:
    """The EMA generator weights of another run's checkpoint, or of an exported model (``.onnx``: read
    back by :func:`ganserve.training.onnx_weights.generator_from_onnx`), checked against ``G``'s
    architecture."""
    if Path(path).suffix == ".onnx":
        from ganserve.training.onnx_weights import generator_from_onnx

        family, model = generator_from_onnx(path)
        state, model_config = model.state_dict(), asdict(family.cfg.model)
    else:
        ckpt = read_checkpoint(path)
        state, model_config = ckpt["ema"], ckpt["config"]["model"]
    own = G.state_dict()
    if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
        raise UsageError(f"train.init_from={path}: its generator ({model_config['family']}, "
                         "model config " + json.dumps(model_config, sort_keys=True) +
                         ") does not match this run's; use the same scale, blocks and g_width")
    return state


def model_file(path: str | Path) -> Path:
    """``path``, which the user gave as a model to measure: :class:`UsageError` if there is no such file."""
    path = Path(path)
    if path.is_dir() and (path / "config.pbtxt").is_file():  # a pyramid ensemble's folder (LAPGAN)
        return path
    if not path.is_file():
        raise UsageError(f"model {path} does not exist (expected a checkpoint .pt, an .onnx file or a "
                         f"pyramid ensemble's folder in a model repository)")
    return path


def model_kind(path: str | Path) -> str:
    """The kind of the model in a checkpoint (its family's :attr:`Family.kind`) or an ONNX file (its
    ``ganserve.kind`` metadata): ``unconditional``, ``super-resolution``, ``text-conditional``, ..."""
    path = model_file(path)
    if path.is_dir():
        from ganserve.training.files import onnx_pyramid

        onnx_pyramid(path)  # refuses anything but a pyramid ensemble, whose kind is unconditional
        return "unconditional"
    if path.suffix == ".onnx":
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 -- onnx raises several types for a file it cannot parse
            raise UsageError(f"cannot read ONNX model {path}: {exc.__class__.__name__}: {exc}") from None
        kind = {p.key: p.value for p in proto.metadata_props}.get("ganserve.kind")
        if kind is None:
            raise UsageError(f"{path} is not a ganserve model (no ganserve.kind in its metadata)")
        return kind
    return get_family(checkpoint_config(read_checkpoint(path))).kind

"""Blocks shared by the families: DCGAN-style up/down stages, normalisation choice, weight init."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ganserve.errors import UsageError


def dcgan_base_size(image_size: int) -> tuple[int, int]:
    """Split ``image_size`` into (base side, number of x2 stages): 28 -> (7, 2), 64 -> (4, 4)."""
    for base in (4, 7):
        side, stages = image_size, 0
        while side > base and side % 2 == 0:
            side, stages = side // 2, stages + 1
        if side == base and stages >= 1:
            return base, stages
    raise UsageError(f"model.image_size={image_size} is not supported: DCGAN needs 4*2^k or 7*2^k "
                     "(e.g. 8, 16, 28, 32, 56, 64, 128)")


def norm2d(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # layer norm over (C, H, W): one group
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise UsageError(f"unknown normalisation {kind!r}; valid: batch, layer, none")


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(module) if enabled else module


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN paper: all weights from N(0, 0.02); norm scales from N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.BatchNorm1d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_shape(x: torch.Tensor, expected: tuple[int | None, ...], what: str) -> None:
    """Shape check at a module boundary; ``None`` matches any size. Skipped while tracing for export."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return
    if x.dim() != len(expected) or any(e is not None and s != e for s, e in zip(x.shape, expected)):
        raise ValueError(f"{what}: expected shape {tuple('*' if e is None else e for e in expected)}, "
                         f"got {tuple(x.shape)}")

"""Exponential moving average of the generator's weights, with standing BatchNorm statistics.

The EMA copy is what gets sampled, evaluated and exported. Its BatchNorm running statistics were
accumulated by the *training* weights, which no longer match the averaged weights, so before use they
are recomputed ("standing statistics", as in BigGAN) from fresh forward passes of the EMA weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, *, decay: float, start: int = 0) -> None:
        self.decay, self.start = decay, start
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._src: list[torch.Tensor] = []

    @torch.no_grad()
    def update(self, model: nn.Module, *, step: int) -> None:
        """Average after ``start`` steps; before that (or with decay 0) just copy.

        The decay warms up as min(decay, (1 + n) / (10 + n)) over the n averaged steps, so early
        samples are not dominated by the random initialisation.
        """
        src = [p.detach() for p in model.parameters()]
        dst = list(self.model.parameters())
        if step < self.start or self.decay == 0:
            torch._foreach_copy_(dst, src)
        else:
            n = step - self.start
            torch._foreach_lerp_(dst, src, 1.0 - min(self.decay, (1 + n) / (10 + n)))

    @torch.no_grad()
    def recalibrate_batchnorm(self, sample_inputs: Callable[[], torch.Tensor | tuple[torch.Tensor, ...]], *,
                              batches: int = 32) -> None:
        """Recompute BatchNorm running mean/var as the plain average over ``batches`` forward passes.
        ``sample_inputs`` gives the model's input, or a tuple of its inputs (e.g. z and text)."""
        bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        saved = [bn.momentum for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average
        self.model.train()
        for _ in range(batches):
            inputs = sample_inputs()
            self.model(*inputs) if isinstance(inputs, tuple) else self.model(inputs)
        self.model.eval()
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)

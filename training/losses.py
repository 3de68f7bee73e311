"""Adversarial losses, each an object working on D's logits, selected by name.

All D losses take ``real`` and ``fake`` logits (``fake`` may hold several kinds of negatives, e.g.
GAN-INT-CLS's fake images and mismatched texts, concatenated). ``real_target`` < 1 is one-sided label
smoothing (Salimans et al. 2016): only the real target moves, fakes stay at 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ganserve.errors import UsageError


class AdversarialLoss:
    name: str = ""
    needs_gradient_penalty = False

    def __init__(self, *, real_target: float = 1.0) -> None:
        self.real_target = real_target

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class NonSaturatingBCE(AdversarialLoss):
    """Goodfellow et al. 2014, with the non-saturating G loss -log D(G(z))."""

    name = "bce"

    def d_loss(self, real, fake):
        t = self.real_target  # BCE(real, t) = t*softplus(-r) + (1-t)*softplus(r)
        return (t * F.softplus(-real) + (1 - t) * F.softplus(real)).mean() + F.softplus(fake).mean()

    def g_loss(self, fake):
        return F.softplus(-fake).mean()


class Hinge(AdversarialLoss):
    """Lim & Ye 2017 / Miyato et al. 2018."""

    name = "hinge"

    def d_loss(self, real, fake):
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()

    def g_loss(self, fake):
        return -fake.mean()


class LeastSquares(AdversarialLoss):
    """Mao et al. 2017 (a=0, b=c=1)."""

    name = "lsgan"

    def d_loss(self, real, fake):
        return 0.5 * ((real - self.real_target) ** 2).mean() + 0.5 * (fake**2).mean()

    def g_loss(self, fake):
        return 0.5 * ((fake - 1) ** 2).mean()


class WassersteinGP(AdversarialLoss):
    """Gulrajani et al. 2017: critic loss plus a gradient penalty added by the loop."""

    name = "wgan-gp"
    needs_gradient_penalty = True

    def d_loss(self, real, fake):
        return fake.mean() - real.mean()

    def g_loss(self, fake):
        return -fake.mean()


LOSS_REGISTRY: dict[str, type[AdversarialLoss]] = {
    cls.name: cls for cls in (NonSaturatingBCE, Hinge, LeastSquares, WassersteinGP)
}


def build_loss(name: str, *, label_smoothing: float = 0.0) -> AdversarialLoss:
    try:
        cls = LOSS_REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown loss {name!r}; valid losses: {', '.join(LOSS_REGISTRY)}") from None
    return cls(real_target=1.0 - label_smoothing)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """E[(||grad_x critic(x)||_2 - 1)^2] at random points between real and fake samples."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, generator=generator)
    x = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

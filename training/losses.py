"""Adversarial losses, each an object working on D's logits, selected by name; the
super-resolution content losses (pixel, VGG19 features, discriminator feature matching); and the
joint image-text embedding loss that pre-trains the text-to-image text encoder.

All D losses take ``real`` and ``fake`` logits (``fake`` may hold several kinds of negatives, e.g.
GAN-INT-CLS's fake images and mismatched texts, concatenated). ``real_target`` < 1 is one-sided label
smoothing (Salimans et al. 2016): only the real target moves, fakes stay at 0.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.files import torch_load


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


# ---------------------------------------------------------------- super-resolution content losses
def pixel_loss(name: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Stage-1 (SRResNet) loss: mean squared or absolute error on [0, 1] pixels."""
    if name == "mse":
        return F.mse_loss(sr, hr)
    if name == "l1":
        return F.l1_loss(sr, hr)
    raise UsageError(f"unknown pixel loss {name!r}; valid: mse, l1")


# torchvision's VGG19 ``features`` layout: conv widths per block, "M" = max pool. Index N of the
# Sequential is ``features.N`` in torchvision's state_dict, so its weights load unchanged.
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
VGG19_LAYERS = {"relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "relu5_4": 35}  # index of the ReLU in features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG19's convolutional part up to ``layer`` (inclusive), in torchvision's key layout
    (``features.0.weight`` ...), for inputs in [0, 1] (ImageNet normalisation is applied here).
    Loaded without torchvision: :func:`load_vgg19` reads a torchvision VGG19 ``state_dict``."""

    def __init__(self, *, layer: str = "relu5_4") -> None:
        super().__init__()
        if layer not in VGG19_LAYERS:
            raise UsageError(f"unknown VGG19 layer {layer!r}; valid: {', '.join(VGG19_LAYERS)}")
        modules: list[nn.Module] = []
        c_in = 3
        for v in VGG19_CFG:
            if v == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = v
        self.features = nn.Sequential(*modules[: VGG19_LAYERS[layer] + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def load_vgg19(path: str | Path, *, layer: str = "relu5_4") -> VGG19Features:
    """A frozen :class:`VGG19Features` from a torchvision ``vgg19`` state_dict file (``.pth``).

    Keys outside ``features.`` (the classifier) and layers past ``layer`` are ignored; a missing or
    misshapen convolution is an error naming the key.
    """
    path = Path(path)
    state = torch_load(path, what="VGG19 weights", expected="torchvision's vgg19 state_dict")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    net = VGG19Features(layer=layer)
    wanted = net.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise UsageError(f"{path} is not a torchvision VGG19 state_dict: missing {', '.join(missing[:4])}")
    bad = [k for k in wanted if tuple(state[k].shape) != tuple(wanted[k].shape)]
    if bad:
        raise UsageError(f"{path}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, "
                         f"VGG19 needs {tuple(wanted[bad[0]].shape)}")
    net.load_state_dict({k: state[k] for k in wanted})
    return net.eval().requires_grad_(False)


def vgg_content_loss(vgg: VGG19Features, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """SRGAN's VGG loss: MSE between feature maps of the SR and HR images (HR side without grad)."""
    with torch.no_grad():
        target = vgg(hr)
    return F.mse_loss(vgg(sr), target)


def feature_matching_loss(fake: list[torch.Tensor], real: list[torch.Tensor]) -> torch.Tensor:
    """Mean over D's stages of the L1 distance between the SR image's and its own HR image's
    activations (paired, as in pix2pixHD's feature matching). The fallback content loss when no
    VGG19 weights are given: D's features are the only learned image features available offline, and
    they track what D uses to tell SR from HR, so matching them adds texture the pixel loss averages away."""
    return torch.stack([F.l1_loss(f, r.detach()) for f, r in zip(fake, real)]).mean()


# ---------------------------------------------------------------- text-to-image: joint embedding
def joint_embedding_loss(img: torch.Tensor, txt: torch.Tensor, classes: torch.Tensor, *,
                         temperature: float = 0.1) -> torch.Tensor:
    """Symmetric class-structured compatibility loss over a batch: img, txt [B, E], classes [B]."""
    scores = F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T / temperature  # [B, B]
    same = (classes[:, None] == classes[None, :]).float()
    target = same / same.sum(1, keepdim=True)   # every text of the image's class is a match (and vice versa)
    return 0.5 * (-(target * scores.log_softmax(1)).sum(1).mean()
                  - (target.T * scores.T.log_softmax(1)).sum(1).mean())

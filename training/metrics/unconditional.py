"""Offline quality metrics for MNIST-style generators, in the feature space of a classifier that
ganserve trains itself (no Inception weights are available offline).

- FID and KID (``ganserve.training.metrics.distances``) between features of generated and real (MNIST test) images.
- Mode coverage: the classifier's predicted digit over the samples: classes covered (>= 1% share),
  the smallest class share and KL(predicted distribution || uniform).

The numbers only mean something next to reference points computed the same way, which
``evaluate`` reports too: real train digits vs test (the floor), the same digits shifted by one pixel,
and blurred with a 3x3 box filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganserve.errors import UsageError
from ganserve.training.checkpoint import load_generator, model_file
from ganserve.training.data.images import load_mnist, to_uint8, to_unit_range
from ganserve.training.files import onnx_session
from ganserve.training.metrics.classifiers import load_classifier
from ganserve.training.metrics.distances import fid, kid


@torch.no_grad()
def features_and_predictions(images: torch.Tensor, *, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 1, 28, 28] -> (features [N, D] float64, predicted class [N])."""
    net = load_classifier()
    feats, preds = [], []
    for i in range(0, images.shape[0], batch):
        f, logits = net.features_and_logits(to_unit_range(images[i: i + batch]))
        feats.append(f.double().numpy())
        preds.append(logits.argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def mode_coverage(pred: np.ndarray, *, classes: int = 10) -> dict[str, float]:
    share = np.bincount(pred, minlength=classes) / len(pred)
    kl = float(sum(p * math.log(p * classes) for p in share if p > 0))
    return {"classes_covered": int((share >= 0.01).sum()), "min_class_share": float(share.min()),
            "kl_to_uniform": kl, "class_shares": [round(float(s), 4) for s in share]}


@dataclass
class Report:
    source: str
    samples: int
    fid: float
    kid: float
    kid_std: float
    classes_covered: int
    min_class_share: float
    kl_to_uniform: float
    class_shares: list[float]


def score(images: torch.Tensor, real: np.ndarray, *, source: str) -> Report:
    feats, preds = features_and_predictions(images)
    k, k_std = kid(feats, real)
    return Report(source=source, samples=len(images), fid=fid(feats, real), kid=k, kid_std=k_std,
                  **mode_coverage(preds))


def shift_one_pixel(images: torch.Tensor) -> torch.Tensor:
    return F.pad(images, (1, 0, 0, 0))[..., :, :-1]  # right by one, zeros enter on the left


def blur_3x3(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.full((1, 1, 3, 3), 1 / 9)
    return F.conv2d(images.float(), kernel, padding=1).round().clamp(0, 255).to(torch.uint8)


def reference_reports(data: str | Path, *, samples: int, real: np.ndarray) -> list[Report]:
    train = load_mnist(data, split="train").images
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:samples]
    digits = train[idx]
    return [score(digits, real, source="reference: real train digits (floor)"),
            score(shift_one_pixel(digits), real, source="reference: real digits shifted 1 px"),
            score(blur_3x3(digits), real, source="reference: real digits blurred 3x3")]


def generate(model_path: str | Path, *, samples: int, seed: int = 0, batch: int = 500) -> torch.Tensor:
    """uint8 [N, 1, 28, 28] samples from a checkpoint (EMA generator) or an ONNX file, quantised to
    uint8 exactly as the gateway does."""
    path = model_file(model_path)
    if path.suffix == ".onnx":
        session, meta = onnx_session(path, kind="unconditional")
        latent = int(meta["ganserve.latent_dim"])
        run = lambda z: torch.from_numpy(session.run(["image"], {"z": z.numpy()})[0])
    else:
        loaded = load_generator(path)
        latent = loaded.family.cfg.model.latent_dim
        run = lambda z: loaded.model(z)
    g = torch.Generator().manual_seed(seed)
    out = []
    with torch.no_grad():
        for i in range(0, samples, batch):
            z = torch.randn(min(batch, samples - i), latent, generator=g)
            out.append(to_uint8(run(z)))
    images = torch.cat(out)
    if images.shape[1:] != (1, 28, 28):
        raise UsageError(f"these metrics need 1x28x28 MNIST-style images, the model makes {tuple(images.shape[1:])}")
    return images


def format_reports(reports: list[Report]) -> str:
    lines = [f"{'source':<44} {'FID':>8} {'KID':>15} {'classes':>8} {'min share':>10} {'KL':>7}"]
    for r in reports:
        lines.append(f"{r.source[:44]:<44} {r.fid:>8.2f} {r.kid:>8.1f}±{r.kid_std:<6.1f} "
                     f"{r.classes_covered:>8d} {r.min_class_share:>10.3f} {r.kl_to_uniform:>7.4f}")
    return "\n".join(lines)


def evaluate(model: str | Path, *, data: str | Path, samples: int = 10_000, seed: int = 0,
             references: bool = True) -> list[Report]:
    """The model's report, then (``references``) the real-data reference points, against MNIST test."""
    if samples < 1000:
        raise UsageError(f"--samples must be at least 1000 for stable FID/KID, got {samples}")
    test = load_mnist(data, split="test").images
    real, _ = features_and_predictions(test)
    reports = [score(generate(model, samples=samples, seed=seed), real, source=str(model))]
    if references:
        reports += reference_reports(data, samples=samples, real=real)
    return reports

"""Offline quality metrics for MNIST-style generators, in the feature space of a classifier that
ganserve trains itself (no Inception weights are available offline).

- FID (Heusel et al. 2017): Fréchet distance between Gaussians fitted to features of generated and
  real (MNIST test) images.
- KID (Bińkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel, mean and std over
  random subsets; unbiased, so usable with few samples.
- Mode coverage: the classifier's predicted digit over the samples: classes covered (>= 1% share),
  the smallest class share and KL(predicted distribution || uniform).

The numbers only mean something next to reference points computed the same way, which
``evaluate`` reports too: real train digits vs test (the floor), the same digits shifted by one pixel,
and blurred with a 3x3 box filter.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganserve.errors import UsageError
from training.classifier import load_classifier
from training.data.images import load_mnist, to_uint8, to_unit_range

METRICS: dict[str, Callable] = {}


def register_metric(fn: Callable) -> Callable:
    METRICS[fn.__name__] = fn
    return fn


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


@register_metric
def fid(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU units make the product singular; sqrtm copes
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # nearly singular product: regularise as in the reference code
        eps = np.eye(a.shape[1]) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


@register_metric
def kid(a: np.ndarray, b: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


@register_metric
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
    path = Path(model_path)
    if not path.is_file():
        raise UsageError(f"model {path} does not exist (expected a checkpoint .pt or an .onnx file)")
    if path.suffix == ".onnx":
        from training.files import onnx_session

        session, meta = onnx_session(path, kind="unconditional")
        latent = int(meta["ganserve.latent_dim"])
        run = lambda z: torch.from_numpy(session.run(["image"], {"z": z.numpy()})[0])
    else:
        from training.checkpoint import load_generator

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


def cli(argv: list[str]) -> int:
    from training.cli import _Parser

    p = _Parser(prog="ganserve evaluate", description="FID, KID and mode coverage in the feature space "
                "of ganserve's MNIST classifier, with reference points.")
    p.add_argument("model", help="checkpoint.pt (its EMA generator) or model.onnx")
    p.add_argument("--data", required=True, help="MNIST folder (the test split is the reference set)")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-references", action="store_true", help="skip the real-data reference points")
    p.add_argument("--json", help="also write the reports to this JSON file")
    args = p.parse_args(argv)
    if not Path(args.model).is_file():
        raise UsageError(f"model {args.model} does not exist (expected a checkpoint .pt or an .onnx file)")
    if args.samples < 1000:
        raise UsageError(f"--samples must be at least 1000 for stable FID/KID, got {args.samples}")
    test = load_mnist(args.data, split="test").images
    real, _ = features_and_predictions(test)
    reports = [score(generate(args.model, samples=args.samples, seed=args.seed), real, source=str(args.model))]
    if not args.no_references:
        reports += reference_reports(args.data, samples=args.samples, real=real)
    print(format_reports(reports))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")
    return 0

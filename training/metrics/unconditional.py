"""Offline quality metrics for MNIST-style generators, in the feature space of a classifier that
ganserve trains itself (no Inception weights are available offline).

- FID and KID (``ganserve.training.metrics.distances``) between features of generated and real (MNIST test) images.
- Mode coverage: the classifier's predicted digit over the samples: classes covered (>= 1% share),
  the smallest class share and KL(predicted distribution || uniform).
- Confidence (the classifier's mean top softmax probability) and diversity (mean distance between the
  images of different seeds, in pixels and in feature space), also along a truncation curve: z drawn
  exactly as the gateway draws it (:func:`seed_latents`, docs/model-contract.md), truncated at t.

Models of scikit-learn's 8x8 digits (the tiny presets) are measured too: their images and the real
digits (the reference set then) are both scaled into MNIST's 20x20 box on a 28x28 frame.

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
from ganserve.training.data.images import (
    load_mnist,
    load_sklearn_digits,
    resize_uint8,
    to_uint8,
    to_unit_range,
)
from ganserve.training.files import onnx_pyramid, onnx_session
from ganserve.training.metrics.classifiers import load_classifier
from ganserve.training.metrics.distances import fid, kid
from ganserve.training.progress import track

TRUNCATIONS: tuple[float | None, ...] = (None, 1.5, 1.0, 0.7, 0.5)  # the curve's points; None is t = inf


@torch.no_grad()
def features_and_probabilities(images: torch.Tensor, *, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 1, 28, 28] -> (features [N, D] float64, class probabilities [N, 10])."""
    net = load_classifier()
    feats, probs = [], []
    for i in track(range(0, images.shape[0], batch), desc=f"scoring {images.shape[0]} images"):
        f, logits = net.features_and_logits(to_unit_range(images[i: i + batch]))
        feats.append(f.double().numpy())
        probs.append(logits.softmax(1).double().numpy())
    return np.concatenate(feats), np.concatenate(probs)


def features_and_predictions(images: torch.Tensor, *, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 1, 28, 28] -> (features [N, D] float64, predicted class [N])."""
    feats, probs = features_and_probabilities(images, batch=batch)
    return feats, probs.argmax(1)


def seed_latents(seeds: range | list[int], *, latent_dim: int, truncation: float | None = None) -> np.ndarray:
    """z for one image per seed, as the gateway draws it (docs/model-contract.md): float32 [N, latent_dim].

    ``Generator(PCG64(seed)).standard_normal(latent_dim, float32)``; with truncation t, every component
    with |z_i| > t is redrawn from the same generator, in rounds, until it lies in [-t, t].
    """
    out = np.empty((len(seeds), latent_dim), dtype=np.float32)
    for row, seed in enumerate(seeds):
        rng = np.random.Generator(np.random.PCG64(seed))
        z = rng.standard_normal(latent_dim, dtype=np.float32)
        if truncation is not None:
            bound = np.float32(min(truncation, 1e30))
            outside = np.abs(z) > bound
            while outside.any():
                z[outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32)
                outside = np.abs(z) > bound
        out[row] = z
    return out


def diversity(images: torch.Tensor, feats: np.ndarray) -> tuple[float, float]:
    """Mean distance between the images of different seeds, pairing the first half with the second:
    (mean absolute pixel difference as a fraction of 255, mean L2 distance of the features)."""
    half = len(images) // 2
    a, b = images[:half].float(), images[half: 2 * half].float()
    pixels = float((a - b).abs().mean() / 255.0)
    features = float(np.linalg.norm(feats[:half] - feats[half: 2 * half], axis=1).mean())
    return pixels, features


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
    kid: float | None       # None on the truncation curve's points (KID is the slow part)
    kid_std: float | None
    classes_covered: int
    min_class_share: float
    kl_to_uniform: float
    class_shares: list[float]
    confidence: float           # the classifier's mean top probability
    pixel_diversity: float      # mean |difference| between images of different seeds, fraction of 255
    feature_diversity: float    # mean L2 distance between their classifier features
    truncation: float | None = None  # a point of the truncation curve; None: untruncated z (or real data)


def score(images: torch.Tensor, real: np.ndarray, *, source: str, truncation: float | None = None) -> Report:
    feats, probs = features_and_probabilities(images)
    k, k_std = kid(feats, real) if truncation is None else (None, None)
    pixels, features = diversity(images, feats)
    return Report(source=source, samples=len(images), fid=fid(feats, real), kid=k, kid_std=k_std,
                  **mode_coverage(probs.argmax(1)), confidence=float(probs.max(1).mean()),
                  pixel_diversity=pixels, feature_diversity=features, truncation=truncation)


def shift_one_pixel(images: torch.Tensor) -> torch.Tensor:
    return F.pad(images, (1, 0, 0, 0))[..., :, :-1]  # right by one, zeros enter on the left


def blur_3x3(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.full((1, 1, 3, 3), 1 / 9)
    return F.conv2d(images.float(), kernel, padding=1).round().clamp(0, 255).to(torch.uint8)


def as_mnist_frame(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 1, 8, 8] scikit-learn digits -> [N, 1, 28, 28]: scaled to 20x20, centred, as MNIST's digits."""
    return F.pad(resize_uint8(images, 20), (4, 4, 4, 4))


def reference_reports(train: torch.Tensor, *, samples: int, real: np.ndarray) -> list[Report]:
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:samples]
    digits = train[idx]
    return [score(digits, real, source="reference: real train digits (floor)"),
            score(shift_one_pixel(digits), real, source="reference: real digits shifted 1 px"),
            score(blur_3x3(digits), real, source="reference: real digits blurred 3x3")]


def generate(model_path: str | Path, *, samples: int, seed: int = 0, truncation: float | None = None,
             batch: int = 500) -> torch.Tensor:
    """uint8 [N, 1, S, S] samples from a checkpoint (EMA generator) or an ONNX file, one per seed
    ``seed .. seed + samples - 1``, with the gateway's z and truncation, quantised to uint8 as the
    gateway does. S is 28 (MNIST) or 8 (scikit-learn's digits)."""
    path = model_file(model_path)
    if path.is_dir():  # a pyramid ensemble (LAPGAN): its levels chained, the final image kept
        pyramid, latent = onnx_pyramid(path)
        run = lambda z: torch.from_numpy(pyramid(z.numpy())[-1])
    elif path.suffix == ".onnx":
        session, meta = onnx_session(path, kind="unconditional")
        latent = int(meta["ganserve.latent_dim"])
        run = lambda z: torch.from_numpy(session.run(["image"], {"z": z.numpy()})[0])
    else:
        loaded = load_generator(path)
        latent = loaded.model.latent_dim
        run = lambda z: loaded.model(z)
    out = []
    with torch.no_grad():
        for i in track(range(0, samples, batch), desc=f"generating {samples} images"):
            seeds = range(seed + i, seed + min(samples, i + batch))
            out.append(to_uint8(run(torch.from_numpy(seed_latents(seeds, latent_dim=latent, truncation=truncation)))))
    images = torch.cat(out)
    if images.shape[1:] not in ((1, 28, 28), (1, 8, 8)):
        raise UsageError("these metrics need 1x28x28 MNIST-style or 1x8x8 scikit-learn-digits images, the model "
                         f"makes {tuple(images.shape[1:])}")
    return images


def format_reports(reports: list[Report]) -> str:
    lines = [(f"{'source':<44} {'FID':>8} {'KID':>15} {'classes':>8} {'min share':>10} {'KL':>7} {'conf':>6} "
              f"{'div px':>7} {'div feat':>8}")]
    curve = [r for r in reports if r.truncation is not None]
    for r in [r for r in reports if r.truncation is None]:
        lines.append(f"{r.source[:44]:<44} {r.fid:>8.2f} {r.kid:>8.1f}±{r.kid_std:<6.1f} "
                     f"{r.classes_covered:>8d} {r.min_class_share:>10.3f} {r.kl_to_uniform:>7.4f} "
                     f"{r.confidence:>6.3f} {r.pixel_diversity:>7.3f} {r.feature_diversity:>8.2f}")
    if curve:
        lines += ["", "truncation curve (the gateway's truncation: |z_i| > t redrawn from the seed's generator)",
                  f"{'t':>5} {'FID':>8} {'confidence':>10} {'div px':>7} {'div feat':>8} {'classes':>8} {'min share':>10}"]
        for r in [reports[0], *curve]:
            t = "inf" if r.truncation is None else f"{r.truncation:g}"
            lines.append(f"{t:>5} {r.fid:>8.2f} {r.confidence:>10.3f} {r.pixel_diversity:>7.3f} "
                         f"{r.feature_diversity:>8.2f} {r.classes_covered:>8d} {r.min_class_share:>10.3f}")
    return "\n".join(lines)


def real_sets(kind: tuple[int, ...], data: str | Path | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(reference set, other real digits for the reference points) for a model making ``kind`` images."""
    if kind == (1, 8, 8):  # scikit-learn's digits: split in two, both in MNIST's frame
        digits = as_mnist_frame(load_sklearn_digits().images)
        return digits[: len(digits) // 2], digits[len(digits) // 2:]
    if data is None:
        raise UsageError("a 28x28 model is measured against MNIST: pass --data DIR (the MNIST IDX files)")
    return load_mnist(data, split="test").images, load_mnist(data, split="train").images


def evaluate(model: str | Path, *, data: str | Path | None, samples: int = 10_000, seed: int = 0,
             references: bool = True, truncations: tuple[float, ...] = ()) -> list[Report]:
    """The model's report, then (``references``) the real-data reference points, then one report per
    truncation in ``truncations`` (the same seeds), against MNIST test (or half of scikit-learn's digits
    for an 8x8 model, the other half giving the reference points)."""
    if samples < 1000:
        raise UsageError(f"--samples must be at least 1000 for stable FID/KID, got {samples}")
    images = generate(model, samples=samples, seed=seed)
    kind = tuple(images.shape[1:])
    test, train = real_sets(kind, data)
    frame = as_mnist_frame if kind == (1, 8, 8) else (lambda x: x)
    real, _ = features_and_predictions(test)
    reports = [score(frame(images), real, source=str(model))]
    if references:
        reports += reference_reports(train, samples=samples, real=real)
    for t in truncations:
        truncated = frame(generate(model, samples=samples, seed=seed, truncation=t))
        reports.append(score(truncated, real, source=f"{model} truncation {t:g}", truncation=t))
    return reports


# ---------------------------------------------------------------- the sample sheet beside the model card
SHEET_SEEDS = tuple(range(60))        # the grid: 6 rows of 10, seeds 0-59 without truncation
SHEET_STRIP_SEEDS = tuple(range(10))  # then one strip per point of the truncation curve, seeds 0-9


def sample_sheet(model: str | Path, path: str | Path, *, scale: int = 2) -> Path:
    """A PNG of the model: the images of seeds 0-59 (what ``POST /generate`` returns for each seed),
    then the images of seeds 0-9 at every truncation of :data:`TRUNCATIONS`, a labelled row each."""
    from PIL import Image, ImageDraw, ImageFont

    grid = generate(model, samples=len(SHEET_SEEDS), seed=SHEET_SEEDS[0])
    strips = [generate(model, samples=len(SHEET_STRIP_SEEDS), seed=SHEET_STRIP_SEEDS[0], truncation=t)
              for t in TRUNCATIONS]
    cell, pad, label_w, head = grid.shape[-1] * scale + 2, 10, 64, 16
    cols = len(SHEET_STRIP_SEEDS)
    width = pad + label_w + cols * cell + pad
    height = head + (len(SHEET_SEEDS) // cols) * cell + pad + head + len(strips) * cell + pad
    sheet = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()

    def paste(image: torch.Tensor, x: int, y: int) -> None:
        tile = Image.fromarray(image[0].numpy()).resize((cell - 2, cell - 2), Image.NEAREST)
        sheet.paste(tile, (x + 1, y + 1))

    draw.text((pad, 2), f"seeds {SHEET_SEEDS[0]}-{SHEET_SEEDS[-1]}, no truncation", fill=200, font=font)
    for i, image in enumerate(grid):
        paste(image, pad + label_w + (i % cols) * cell, head + (i // cols) * cell)
    top = head + (len(SHEET_SEEDS) // cols) * cell + pad
    draw.text((pad, top + 2), f"seeds {SHEET_STRIP_SEEDS[0]}-{SHEET_STRIP_SEEDS[-1]} at truncation t",
              fill=200, font=font)
    for r, (t, strip) in enumerate(zip(TRUNCATIONS, strips)):
        y = top + head + r * cell
        draw.text((pad, y + cell // 2 - 5), "t = inf" if t is None else f"t = {t:g}", fill=200, font=font)
        for i, image in enumerate(strip):
            paste(image, pad + label_w + i * cell, y)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path


PYRAMID_SHEET_SEEDS = tuple(range(30))  # a pyramid's sheet: seeds 0-29, each with its levels


def pyramid_sheet(model_dir: str | Path, path: str | Path, *, scale: int = 2) -> Path:
    """A PNG of a pyramid ensemble (LAPGAN): blocks of 10 seeds, a row per level (coarse to fine), every
    level drawn at the final size (nearest neighbour); the last row of a block is what ``POST /generate``
    returns for those seeds."""
    from PIL import Image, ImageDraw, ImageFont

    run, latent = onnx_pyramid(model_dir)
    levels = run(seed_latents(PYRAMID_SHEET_SEEDS, latent_dim=latent))
    side = levels[-1].shape[-1]
    cell, pad, label_w, head, cols = side * scale + 2, 10, 64, 16, 10
    blocks = len(PYRAMID_SHEET_SEEDS) // cols
    width = pad + label_w + cols * cell + pad
    height = blocks * (head + len(levels) * cell + pad)
    sheet = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for b in range(blocks):
        top = b * (head + len(levels) * cell + pad)
        seeds = PYRAMID_SHEET_SEEDS[b * cols:(b + 1) * cols]
        draw.text((pad, top + 2), f"seeds {seeds[0]}-{seeds[-1]}", fill=200, font=font)
        for r, level in enumerate(levels):
            y = top + head + r * cell
            s = level.shape[-1]
            draw.text((pad, y + cell // 2 - 5), f"{s}x{s}", fill=200, font=font)
            pixels = to_uint8(torch.from_numpy(level[b * cols:(b + 1) * cols]))
            for i, image in enumerate(pixels):
                tile = Image.fromarray(image[0].numpy()).resize((cell - 2, cell - 2), Image.NEAREST)
                sheet.paste(tile, (pad + label_w + i * cell + 1, y + 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path

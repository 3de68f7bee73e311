"""Super-resolution quality on held-out images: PSNR and SSIM on the Y channel, next to bicubic.

Conventions follow BasicSR (and most SR papers since EDSR): HR images are cropped to a multiple of
the scale; LR inputs are their bicubic downscaling (Pillow's antialiased bicubic); the model's output
is quantised to uint8 as the gateway would; both images go to Y = 16 + (65.481 R + 128.553 G +
24.966 B) / 255 (ITU-R BT.601, R, G, B in [0, 1], Y in [16, 235]); ``scale`` pixels are cropped at
every border; PSNR uses a peak of 255, SSIM the 11x11 Gaussian window (sigma 1.5) of Wang et al. 2004
with K1 = 0.01, K2 = 0.03. The bicubic baseline upscales the same LR image with the same filter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ganserve.errors import UsageError
from ganserve.training.checkpoint import load_generator, model_file
from ganserve.training.config import DataConfig
from ganserve.training.data.sr import bicubic_resize, load_sr_images, make_pair
from ganserve.training.files import onnx_session


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """uint8 (or [0, 255] float) [H, W, 3] RGB -> float64 [H, W] Y in [16, 235]."""
    x = np.asarray(image, dtype=np.float64) / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    return y[border:-border, border:-border] if border else y


def psnr_y(a: np.ndarray, b: np.ndarray, *, border: int) -> float:
    """PSNR (dB) between two uint8 RGB images on the Y channel, ``border`` px cropped."""
    ya, yb = _crop(rgb_to_y(a), border), _crop(rgb_to_y(b), border)
    mse = float(np.mean((ya - yb) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return fftconvolve(x, window, mode="valid")


def ssim_y(a: np.ndarray, b: np.ndarray, *, border: int) -> float:
    """SSIM between two uint8 RGB images on the Y channel, ``border`` px cropped (BasicSR's ``_ssim``)."""
    ya, yb = _crop(rgb_to_y(a), border), _crop(rgb_to_y(b), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(g / g.sum(), g / g.sum())
    mu_a, mu_b = _gaussian_filter_valid(ya, window), _gaussian_filter_valid(yb, window)
    var_a = _gaussian_filter_valid(ya**2, window) - mu_a**2
    var_b = _gaussian_filter_valid(yb**2, window) - mu_b**2
    cov = _gaussian_filter_valid(ya * yb, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


Upscaler = Callable[[np.ndarray], np.ndarray]  # uint8 [h, w, 3] -> uint8 [s*h, s*w, 3]


@dataclass
class ImageScore:
    image: str
    size: str           # HR size, "HxW"
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float


@dataclass
class SRReport:
    source: str
    scale: int
    data: str
    psnr: float          # means over the images
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float
    images: list[ImageScore]
    tiling: str = ""               # the tiling checked, e.g. "64x64 LR tiles, overlap 8"
    tiled_vs_whole_psnr: float = math.inf  # min over images of PSNR (Y) between tiled and whole-image output

    @property
    def psnr_gain(self) -> float:
        return self.psnr - self.bicubic_psnr


def evaluate_upscaler(upscale: Upscaler, images: list[tuple[str, np.ndarray]], *, scale: int,
                      source: str, data: str, tile: int | None = None, overlap: int = 0) -> SRReport:
    scores, tiled = [], []
    for name, image in images:
        pair = make_pair(name, image, scale)
        h, w = pair.hr.shape[:2]
        sr = upscale(pair.lr)
        if sr.shape != pair.hr.shape:
            raise RuntimeError(f"{source} made {sr.shape} from {pair.lr.shape}, expected {pair.hr.shape}")
        bicubic = bicubic_resize(pair.lr, (h, w))
        if tile:
            tiled.append(psnr_y(upscale_tiled(upscale, pair.lr, scale=scale, tile=tile, overlap=overlap), sr,
                                border=0))
        scores.append(ImageScore(name, f"{h}x{w}", psnr_y(sr, pair.hr, border=scale), ssim_y(sr, pair.hr, border=scale),
                                 psnr_y(bicubic, pair.hr, border=scale), ssim_y(bicubic, pair.hr, border=scale)))
    mean = lambda key: float(np.mean([getattr(s, key) for s in scores]))
    return SRReport(source=source, scale=scale, data=data, psnr=mean("psnr"), ssim=mean("ssim"),
                    bicubic_psnr=mean("bicubic_psnr"), bicubic_ssim=mean("bicubic_ssim"), images=scores,
                    tiling=f"{tile}x{tile} LR tiles, overlap {overlap}" if tile else "",
                    tiled_vs_whole_psnr=min(tiled, default=math.inf))


def _tile_spans(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis of length n: (start, end) of each tile and (lo, hi) of the part it owns
    (overlaps split at their middle). The last tile is moved back to end at n, never padded."""
    if n <= tile:
        return [(0, n, 0, n)]
    starts = list(range(0, n - tile, tile - overlap)) + [n - tile]
    ends = [a + tile for a in starts]
    cuts = [0] + [(ends[i] + starts[i + 1]) // 2 for i in range(len(starts) - 1)] + [n]
    return [(a, b, cuts[i], cuts[i + 1]) for i, (a, b) in enumerate(zip(starts, ends))]


def upscale_tiled(upscale: Upscaler, lr: np.ndarray, *, scale: int, tile: int, overlap: int) -> np.ndarray:
    """Reference tiling: ``tile`` x ``tile`` LR tiles overlapping by at least ``overlap`` px, images
    smaller than a tile edge-padded up to it (Triton's fixed shape), each output pixel taken from the
    tile that owns it. What the gateway does may differ in detail (e.g. blending); this measures
    how far a tiled result is from a whole-image pass."""
    h, w = lr.shape[:2]
    padded = np.pad(lr, ((0, max(0, tile - h)), (0, max(0, tile - w)), (0, 0)), mode="edge")
    out = np.zeros((h * scale, w * scale, 3), dtype=np.uint8)
    for y0, y1, oy0, oy1 in _tile_spans(max(h, tile), tile, overlap):
        for x0, x1, ox0, ox1 in _tile_spans(max(w, tile), tile, overlap):
            sr = upscale(padded[y0:y1, x0:x1])
            oy1c, ox1c = min(oy1, h), min(ox1, w)
            out[oy0 * scale: oy1c * scale, ox0 * scale: ox1c * scale] = \
                sr[(oy0 - y0) * scale: (oy1c - y0) * scale, (ox0 - x0) * scale: (ox1c - x0) * scale]
    return out


def to_uint8_image(x: np.ndarray) -> np.ndarray:
    """float [3, H, W] in [0, 1] -> uint8 [H, W, 3], rounding to nearest (as the gateway does)."""
    return (np.clip(x, 0.0, 1.0) * 255.0).round().astype(np.uint8).transpose(1, 2, 0)


def load_upscaler(model_path: str | Path) -> tuple[Upscaler, int, tuple[int, int]]:
    """(upscale function, scale, (tile size, tile overlap)) from a super-resolution checkpoint (its EMA
    generator) or ONNX file."""
    path = model_file(model_path)
    if path.suffix == ".onnx":
        session, meta = onnx_session(path, kind="super-resolution")
        scale = int(meta["ganserve.scale"])

        def run(lr: np.ndarray) -> np.ndarray:
            x = (lr.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
            return to_uint8_image(session.run(["sr"], {"lr": x})[0][0])

        return run, scale, (int(meta["ganserve.tile_size"]), int(meta["ganserve.tile_overlap"]))
    loaded = load_generator(path)
    if loaded.family.export_spec().kind != "super-resolution":
        raise UsageError(f"{path} is a {loaded.family.name} checkpoint, not super-resolution")

    @torch.no_grad()
    def run_torch(lr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(lr.transpose(2, 0, 1).copy())[None].float().div(255)
        return to_uint8_image(loaded.model(x)[0].numpy())

    m = loaded.family.cfg.model
    return run_torch, m.scale, (m.tile_size, m.tile_overlap)


def format_report(r: SRReport) -> str:
    lines = [f"x{r.scale} super-resolution, {r.data}; Y channel, {r.scale} px border cropped",
             f"{'image':<22} {'HR size':>10} {'PSNR':>7} {'bicubic':>8} {'gain':>6} {'SSIM':>7} {'bicubic':>8}"]
    for s in r.images:
        lines.append(f"{s.image[:22]:<22} {s.size:>10} {s.psnr:>7.2f} {s.bicubic_psnr:>8.2f} "
                     f"{s.psnr - s.bicubic_psnr:>+6.2f} {s.ssim:>7.4f} {s.bicubic_ssim:>8.4f}")
    lines.append(f"{'mean':<22} {'':>10} {r.psnr:>7.2f} {r.bicubic_psnr:>8.2f} {r.psnr_gain:>+6.2f} "
                 f"{r.ssim:>7.4f} {r.bicubic_ssim:>8.4f}")
    if r.tiling:
        lines.append(f"tiled ({r.tiling}) vs whole-image output: PSNR (Y) >= {r.tiled_vs_whole_psnr:.1f} dB")
    return "\n".join(lines)


def report_to_json(r: SRReport) -> dict:
    d = {"kind": "super-resolution", **asdict(r), "psnr_gain": r.psnr_gain}
    if not math.isfinite(d["tiled_vs_whole_psnr"]):
        d["tiled_vs_whole_psnr"] = None  # identical, or not measured: JSON has no infinity
    return d


def evaluate(model: str | Path, *, data: str | Path | None = None, limit: int | None = None,
             tiling: bool = True) -> SRReport:
    """PSNR/SSIM of ``model`` (checkpoint or ONNX) on the held-out images: the folder ``data``, or the
    built-in held-out photos; ``tiling`` also compares tiled upscaling (the model's tile size and overlap)
    with whole images."""
    upscale, scale, (tile, overlap) = load_upscaler(model)
    cfg = DataConfig(name="sr-folder", path=str(data), limit=limit) if data else \
        DataConfig(name="sr-builtin", split="test", limit=limit)
    images = load_sr_images(cfg)
    where = f"folder {data}" if data else "sr-builtin held-out photos"
    return evaluate_upscaler(upscale, images, scale=scale, source=str(model),
                             data=f"{where} ({len(images)} images: {', '.join(n for n, _ in images)})",
                             tile=tile if tiling else None, overlap=overlap)

"""Super-resolution quality on held-out images: PSNR and SSIM on the Y channel, next to bicubic.

Conventions follow BasicSR (and most SR papers since EDSR): HR images are cropped to a multiple of
the scale; LR inputs are their bicubic downscaling (Pillow's antialiased bicubic); the model's output
is quantised to uint8 as the gateway would; both images go to Y = 16 + (65.481 R + 128.553 G +
24.966 B) / 255 (ITU-R BT.601, R, G, B in [0, 1], Y in [16, 235]); ``scale`` pixels are cropped at
every border; PSNR uses a peak of 255, SSIM the 11x11 Gaussian window (sigma 1.5) of Wang et al. 2004
with K1 = 0.01, K2 = 0.03. The bicubic baseline upscales the same LR image with the same filter.

Sharpness (:func:`sharpness_y`): the high-frequency energy of the output relative to the ground truth,
``mean(L(Y_sr)^2) / mean(L(Y_hr)^2)`` with L the 3x3 Laplacian ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``
(valid positions, same border crop). 1.0 means as much fine detail (edges, texture, noise) as the HR
image; bicubic and PSNR-oriented models, which average plausible textures into blur, score well below
1; an adversarial model should come closer to 1 (above 1 is over-sharpening or invented noise). It says
nothing about whether the detail is the right detail: PSNR and SSIM do that.
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
from ganserve.training.progress import track


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


LAPLACIAN = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def hf_energy(y: np.ndarray) -> float:
    """Mean squared 3x3 Laplacian of a 2-D image over the valid positions: its high-frequency energy."""
    y = np.asarray(y, dtype=np.float64)
    lap = (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * y[1:-1, 1:-1])
    return float(np.mean(lap**2))


def sharpness_y(sr: np.ndarray, hr: np.ndarray, *, border: int) -> float:
    """High-frequency energy of ``sr`` over that of ``hr`` (uint8 RGB images, Y channel, ``border`` px
    cropped): 1.0 = as much fine detail as the ground truth, lower = blurrier."""
    ref = hf_energy(_crop(rgb_to_y(hr), border))
    if ref == 0:
        raise ValueError("the reference image has no high-frequency energy (flat or linear): sharpness undefined")
    return hf_energy(_crop(rgb_to_y(sr), border)) / ref


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
    sharpness: float = math.nan          # HF energy of the output / HR's (sharpness_y)
    bicubic_sharpness: float = math.nan
    reference_psnr: float | None = None  # the --compare model's figures, when one was given
    reference_ssim: float | None = None
    reference_sharpness: float | None = None


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
    sharpness: float = math.nan    # means over the images of sharpness_y
    bicubic_sharpness: float = math.nan
    reference: str = ""            # the model measured alongside (e.g. the SRResNet an SRGAN came from)
    reference_psnr: float | None = None
    reference_ssim: float | None = None
    reference_sharpness: float | None = None

    @property
    def psnr_gain(self) -> float:
        return self.psnr - self.bicubic_psnr


def evaluate_upscaler(upscale: Upscaler, images: list[tuple[str, np.ndarray]], *, scale: int,
                      source: str, data: str, tile: int | None = None, overlap: int = 0,
                      reference: tuple[str, Upscaler] | None = None) -> SRReport:
    """Scores of ``upscale`` on ``images``; ``reference`` = (name, upscaler) is measured alongside."""
    scores, tiled = [], []
    for name, image in track(images, desc=f"upscaling {len(images)} images", unit="image"):
        pair = make_pair(name, image, scale)
        h, w = pair.hr.shape[:2]
        sr = upscale(pair.lr)
        if sr.shape != pair.hr.shape:
            raise RuntimeError(f"{source} made {sr.shape} from {pair.lr.shape}, expected {pair.hr.shape}")
        bicubic = bicubic_resize(pair.lr, (h, w))
        if tile:
            tiled.append(psnr_y(upscale_tiled(upscale, pair.lr, scale=scale, tile=tile, overlap=overlap), sr,
                                border=0))
        score = ImageScore(name, f"{h}x{w}", psnr_y(sr, pair.hr, border=scale), ssim_y(sr, pair.hr, border=scale),
                           psnr_y(bicubic, pair.hr, border=scale), ssim_y(bicubic, pair.hr, border=scale),
                           sharpness_y(sr, pair.hr, border=scale), sharpness_y(bicubic, pair.hr, border=scale))
        if reference:
            ref = reference[1](pair.lr)
            score.reference_psnr, score.reference_ssim, score.reference_sharpness = (
                psnr_y(ref, pair.hr, border=scale), ssim_y(ref, pair.hr, border=scale),
                sharpness_y(ref, pair.hr, border=scale))
        scores.append(score)
    mean = lambda key: float(np.mean([getattr(s, key) for s in scores]))
    refs = {k: mean(f"reference_{k}") for k in ("psnr", "ssim", "sharpness")} if reference else {}
    return SRReport(source=source, scale=scale, data=data, psnr=mean("psnr"), ssim=mean("ssim"),
                    bicubic_psnr=mean("bicubic_psnr"), bicubic_ssim=mean("bicubic_ssim"), images=scores,
                    tiling=f"{tile}x{tile} LR tiles, overlap {overlap}" if tile else "",
                    tiled_vs_whole_psnr=min(tiled, default=math.inf), sharpness=mean("sharpness"),
                    bicubic_sharpness=mean("bicubic_sharpness"), reference=reference[0] if reference else "",
                    reference_psnr=refs.get("psnr"), reference_ssim=refs.get("ssim"),
                    reference_sharpness=refs.get("sharpness"))


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
    ref = bool(r.reference)
    lines = [f"x{r.scale} super-resolution, {r.data}; Y channel, {r.scale} px border cropped",
             "sharp = high-frequency energy of the output / the HR image's (1 = as detailed as HR)"]
    if ref:
        lines.append(f"ref = {r.reference}")
    lines.append(f"{'image':<22} {'HR size':>10} {'PSNR':>7} {'bicubic':>8} {'gain':>6} {'SSIM':>7} {'bicubic':>8} "
                 f"{'sharp':>6} {'bicubic':>8}" + (f" {'ref PSNR':>8} {'SSIM':>7} {'sharp':>6}" if ref else ""))
    rows = [(s.image[:22], s.size, s) for s in r.images] + [("mean", "", r)]
    for name, size, s in rows:
        line = (f"{name:<22} {size:>10} {s.psnr:>7.2f} {s.bicubic_psnr:>8.2f} {s.psnr - s.bicubic_psnr:>+6.2f} "
                f"{s.ssim:>7.4f} {s.bicubic_ssim:>8.4f} {s.sharpness:>6.3f} {s.bicubic_sharpness:>8.3f}")
        if ref:
            line += f" {s.reference_psnr:>8.2f} {s.reference_ssim:>7.4f} {s.reference_sharpness:>6.3f}"
        lines.append(line)
    if r.tiling:
        lines.append(f"tiled ({r.tiling}) vs whole-image output: PSNR (Y) >= {r.tiled_vs_whole_psnr:.1f} dB")
    return "\n".join(lines)


def report_to_json(r: SRReport) -> dict:
    d = {"kind": "super-resolution", **asdict(r), "psnr_gain": r.psnr_gain}
    if not math.isfinite(d["tiled_vs_whole_psnr"]):
        d["tiled_vs_whole_psnr"] = None  # identical, or not measured: JSON has no infinity
    return d


def held_out_images(data: str | Path | None, limit: int | None) -> tuple[list[tuple[str, np.ndarray]], str]:
    """(name, HR image) of the folder ``data`` or the built-in held-out photos, and where they came from."""
    cfg = DataConfig(name="sr-folder", path=str(data), limit=limit) if data else \
        DataConfig(name="sr-builtin", split="test", limit=limit)
    return load_sr_images(cfg), (f"folder {data}" if data else "sr-builtin held-out photos")


def evaluate(model: str | Path, *, data: str | Path | None = None, limit: int | None = None,
             tiling: bool = True, compare: str | Path | None = None) -> SRReport:
    """PSNR/SSIM/sharpness of ``model`` (checkpoint or ONNX) on the held-out images: the folder ``data``,
    or the built-in held-out photos; ``tiling`` also compares tiled upscaling (the model's tile size and
    overlap) with whole images; ``compare`` (another model of the same scale) is measured alongside."""
    upscale, scale, (tile, overlap) = load_upscaler(model)
    reference = None
    if compare is not None:
        ref_upscale, ref_scale, _ = load_upscaler(compare)
        if ref_scale != scale:
            raise UsageError(f"--compare {compare} upscales x{ref_scale}, {model} x{scale}: compare models of one scale")
        reference = (str(compare), ref_upscale)
    images, where = held_out_images(data, limit)
    return evaluate_upscaler(upscale, images, scale=scale, source=str(model),
                             data=f"{where} ({len(images)} images: {', '.join(n for n, _ in images)})",
                             tile=tile if tiling else None, overlap=overlap, reference=reference)


def detailed_window(hr: np.ndarray, side: int) -> tuple[int, int]:
    """(top, left) of the ``side`` x ``side`` window of ``hr`` with the most high-frequency energy (Y
    channel), on a grid of half-window steps: where super-resolution models differ most."""
    y = rgb_to_y(hr)
    h, w = y.shape
    best, at = -1.0, (0, 0)
    for top in range(0, max(1, h - side + 1), max(1, side // 2)):
        for left in range(0, max(1, w - side + 1), max(1, side // 2)):
            e = hf_energy(y[top:top + side, left:left + side])
            if e > best:
                best, at = e, (top, left)
    return at


def sample_sheet(model: str | Path, path: str | Path, *, data: str | Path | None = None, limit: int | None = None,
                 compare: str | Path | None = None, crop: int = 96, zoom: int = 2) -> Path:
    """A PNG, a row per held-out image: ``crop`` x ``crop`` HR-pixel crops (the most detailed window of
    the image) of the LR input (nearest-neighbour enlarged), bicubic, the ``compare`` model, ``model``
    and the HR image, each enlarged ``zoom`` x (nearest neighbour) so single pixels stay visible."""
    from PIL import Image, ImageDraw, ImageFont

    upscale, scale, _ = load_upscaler(model)
    columns: list[tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = [
        ("LR (input)", lambda lr, hr: np.repeat(np.repeat(lr, scale, 0), scale, 1)),
        ("bicubic", lambda lr, hr: bicubic_resize(lr, hr.shape[:2]))]
    if compare is not None:
        ref_upscale = load_upscaler(compare)[0]
        columns.append((Path(compare).parent.parent.name if Path(compare).suffix == ".onnx" else "reference",
                        lambda lr, hr: ref_upscale(lr)))
    columns += [(Path(model).parent.parent.name if Path(model).suffix == ".onnx" else "this model",
                 lambda lr, hr: upscale(lr)), ("HR (ground truth)", lambda lr, hr: hr)]
    images, _ = held_out_images(data, limit)
    crop -= crop % scale
    size, pad, head, label_w = crop * zoom, 4, 16, 90
    font = ImageFont.load_default()
    sheet = Image.new("RGB", (label_w + len(columns) * (size + pad), head + len(images) * (size + pad)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for k, (title, _) in enumerate(columns):
        draw.text((label_w + k * (size + pad) + 2, 2), title, fill=(220, 220, 220), font=font)
    for r, (name, image) in enumerate(images):
        pair = make_pair(name, image, scale)
        top, left = detailed_window(pair.hr, crop)
        top, left = top - top % scale, left - left % scale
        # upscale an LR window a little larger than the crop, so the crop has no tile border in it
        m = 8
        lt, ll = max(0, top // scale - m), max(0, left // scale - m)
        lr = pair.lr[lt: top // scale + crop // scale + m, ll: left // scale + crop // scale + m]
        hr = pair.hr[lt * scale: lt * scale + lr.shape[0] * scale, ll * scale: ll * scale + lr.shape[1] * scale]
        oy, ox = top - lt * scale, left - ll * scale
        y = head + r * (size + pad)
        draw.text((4, y + size // 2 - 6), name[:14], fill=(230, 230, 230), font=font)
        for k, (_, make) in enumerate(columns):
            out = make(lr, hr)[oy: oy + crop, ox: ox + crop]
            tile = Image.fromarray(np.ascontiguousarray(out)).resize((size, size), Image.Resampling.NEAREST)
            sheet.paste(tile, (label_w + k * (size + pad), y))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    return path

"""Image sets as uint8 tensors in memory: MNIST (IDX files), image folders, scikit-learn's digits.

Every data set here is small enough to hold in memory as ``uint8 [N, C, H, W]``; batches are made by
indexing, which is faster than a DataLoader for these sizes. Pixels are scaled to [-1, 1] on the fly.
No torchvision: MNIST is read from its IDX files and images with Pillow.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganserve.errors import UsageError
from ganserve.training.config import DataConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 ``[N, C, H, W]`` plus optional integer labels ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor | None
    description: str

    def __len__(self) -> int:
        return self.images.shape[0]


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


# ---------------------------------------------------------------- MNIST (IDX)
def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise UsageError(f"MNIST file {stem}[.gz] not found in {folder} (expected the standard IDX files: "
                     f"{', '.join(n for pair in MNIST_FILES.values() for n in pair)})")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not): big-endian magic, dims, then unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if len(data) < 4:
        raise UsageError(f"{path} is too short to be an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise UsageError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()}; "
                         "expected 00000801 for labels or 00000803 for images)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UsageError(f"{path} is truncated or malformed: header says {dims} "
                         f"({int(np.prod(dims))} bytes), found {body.size} bytes")
    return body.reshape(dims)


def load_mnist(path: str | Path, *, split: str = "train") -> ImageSet:
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"MNIST folder {folder} does not exist")
    if split not in MNIST_FILES:
        raise UsageError(f"unknown MNIST split {split!r}; valid splits: {', '.join(MNIST_FILES)}")
    img_stem, lbl_stem = MNIST_FILES[split]
    images = read_idx(_find_idx(folder, img_stem))
    labels = read_idx(_find_idx(folder, lbl_stem))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise UsageError(f"MNIST {split} images {images.shape} and labels {labels.shape} do not match")
    return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                    f"mnist {split} ({images.shape[0]} images, {folder})")


# ---------------------------------------------------------------- image folders
def load_image(path: Path, *, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")
        # centre crop to a square, then resize with a good filter
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def load_image_folder(path: str | Path, *, size: int, channels: int, limit: int | None = None) -> ImageSet:
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit is not None:
        files = files[:limit]
    if not files:
        raise UsageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {folder}")
    arrays = []
    for f in files:
        try:
            arrays.append(load_image(f, size=size, channels=channels))
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot decode image {f}: {exc}") from None
    return ImageSet(torch.from_numpy(np.stack(arrays)), None, f"image folder {folder} ({len(files)} images)")


# ---------------------------------------------------------------- scikit-learn digits
def load_sklearn_digits() -> ImageSet:
    """scikit-learn's bundled 1797 8x8 digits (values 0..16), for tiny runs and tests."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return ImageSet(torch.from_numpy(images), torch.from_numpy(bunch.target.astype(np.int64)),
                    "scikit-learn digits (1797 8x8 images)")


def resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def load_dataset(cfg: DataConfig, *, image_size: int, channels: int) -> ImageSet:
    """Load the configured data set at the model's resolution and channel count."""
    if cfg.name == "mnist":
        if cfg.path is None:
            raise UsageError("the mnist data set needs a path: --data DIR (a folder with the IDX files)")
        data = load_mnist(cfg.path, split=cfg.split)
    elif cfg.name == "digits":
        data = load_sklearn_digits()
    elif cfg.name == "image-folder":
        if cfg.path is None:
            raise UsageError("the image-folder data set needs a path: --data DIR")
        return load_image_folder(cfg.path, size=image_size, channels=channels, limit=cfg.limit)
    else:
        raise UsageError(f"unknown data set {cfg.name!r}")
    images, labels = data.images, data.labels
    if cfg.limit is not None:
        images, labels = images[: cfg.limit], None if labels is None else labels[: cfg.limit]
    if images.shape[1] != channels:
        images = images.expand(-1, channels, -1, -1).contiguous() if images.shape[1] == 1 else \
            images.float().mean(1, keepdim=True).round().to(torch.uint8)
    return ImageSet(resize_uint8(images, image_size), labels, data.description)

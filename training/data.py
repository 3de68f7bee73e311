"""Data sets as uint8 tensors in memory, and a seeded, resumable, shardable batch sampler.

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
from training.config import DataConfig

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
def _load_image(path: Path, *, size: int, channels: int) -> np.ndarray:
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
            arrays.append(_load_image(f, size=size, channels=channels))
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


class BatchSampler:
    """Seeded epoch permutations, sharded across ranks, with a resumable position.

    Each epoch draws a permutation from ``seed + epoch`` (so any position can be restored exactly),
    keeps the ``rank``-th of every ``world`` indices, and yields full batches only.
    """

    def __init__(self, n: int, *, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        per_rank = n // world
        if per_rank < batch_size:
            raise UsageError(f"data set of {n} examples is too small for batch size {batch_size}"
                             f" on {world} process(es)")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.position = 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[self.rank: (self.n // self.world) * self.world: self.world]

    def next_indices(self) -> torch.Tensor:
        if self.position + self.batch_size > self._perm.numel():
            self.epoch, self.position = self.epoch + 1, 0
            self._perm = self._permutation()
        idx = self._perm[self.position: self.position + self.batch_size]
        self.position += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._perm = self._permutation()


# ---------------------------------------------------------------- super-resolution
# The offline photo set: scikit-image's bundled images (those that need no download) and
# scikit-learn's two sample photos. The held-out ("test") images are never trained on.
SR_BUILTIN_TRAIN = ("rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina",
                    "sklearn:china", "sklearn:flower", "camera", "moon", "brick", "grass", "gravel", "coins",
                    "clock", "cell", "page", "text")
SR_BUILTIN_TEST = ("astronaut", "coffee", "chelsea")


def _builtin_photo(name: str) -> np.ndarray:
    """uint8 [H, W, 3] from scikit-learn (``sklearn:NAME``) or scikit-image (``NAME``)."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(name.split(":", 1)[1] + ".jpg"), dtype=np.uint8)
    try:
        import skimage.data
    except ModuleNotFoundError:
        raise UsageError("the sr-builtin data set needs scikit-image (pip install 'ganserve[train]')") from None
    image = getattr(skimage.data, name)()
    if isinstance(image, tuple):  # stereo pairs: the left view
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 2:  # grey photos: the same detail in all three channels
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]).astype(np.uint8)


def bicubic_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [h, w, 3] (size = (h, w)) with Pillow's antialiased bicubic filter,
    the usual stand-in for MATLAB's ``imresize`` in super-resolution benchmarks."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BICUBIC))


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop [H, W, C] at the bottom/right so both sides are multiples of ``scale``."""
    h, w = image.shape[0] - image.shape[0] % scale, image.shape[1] - image.shape[1] % scale
    return image[:h, :w]


@dataclass(frozen=True)
class SRPair:
    name: str
    hr: np.ndarray  # uint8 [H, W, 3], H and W multiples of the scale
    lr: np.ndarray  # uint8 [H / s, W / s, 3], bicubic-downscaled hr


def make_pair(name: str, image: np.ndarray, scale: int) -> SRPair:
    hr = mod_crop(image, scale)
    return SRPair(name, hr, bicubic_resize(hr, (hr.shape[0] // scale, hr.shape[1] // scale)))


def load_sr_images(cfg: DataConfig) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 [H, W, 3]) for the configured super-resolution set and split."""
    if cfg.name == "sr-builtin":
        if cfg.split not in ("train", "test"):
            raise UsageError(f"unknown sr-builtin split {cfg.split!r}; valid splits: train, test (held out)")
        names = SR_BUILTIN_TRAIN if cfg.split == "train" else SR_BUILTIN_TEST
        images = [(n.removeprefix("sklearn:"), _builtin_photo(n)) for n in names]
    elif cfg.name == "sr-folder":
        if cfg.path is None:
            raise UsageError("the sr-folder data set needs a path: --data DIR (high-resolution images)")
        folder = Path(cfg.path)
        if not folder.is_dir():
            raise UsageError(f"image folder {folder} does not exist")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise UsageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {folder}")
        images = []
        from PIL import Image

        for f in files[: cfg.limit]:
            try:
                with Image.open(f) as im:
                    images.append((f.name, np.asarray(im.convert("RGB"), dtype=np.uint8)))
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot decode image {f}: {exc}") from None
        return images
    else:
        raise UsageError(f"{cfg.name!r} is not a super-resolution data set")
    return images[: cfg.limit]


class SRPatchSet:
    """Aligned (LR, HR) random crops from a few large images, for the batch sampler.

    The sampler draws indices into a virtual list of ``len(self)`` crops: each image contributes in
    proportion to its area, and index ``i`` always gives the same crop, flip and rotation (drawn from a
    generator seeded with ``seed`` and ``i``), so a resumed run sees exactly the crops it would have.
    LR images are made once per image (bicubic, the whole image), then cropped in step with the HR.
    """

    def __init__(self, images: list[tuple[str, np.ndarray]], *, scale: int, lr_patch: int, seed: int = 0,
                 crops_per_patch_area: int = 64, description: str = "") -> None:
        self.scale, self.lr_patch, self.seed = scale, lr_patch, seed
        hr_patch = lr_patch * scale
        self.pairs = [make_pair(n, im, scale) for n, im in images]
        small = [p.name for p in self.pairs if min(p.hr.shape[:2]) < hr_patch]
        if small:
            raise UsageError(f"images smaller than the {hr_patch}x{hr_patch} HR crop: {', '.join(small)}")
        self.hr = [torch.from_numpy(p.hr.transpose(2, 0, 1).copy()) for p in self.pairs]  # uint8 [3, H, W]
        self.lr = [torch.from_numpy(p.lr.transpose(2, 0, 1).copy()) for p in self.pairs]  # uint8 [3, h, w]
        counts = [max(1, p.hr.shape[0] * p.hr.shape[1] // hr_patch**2) * crops_per_patch_area for p in self.pairs]
        self.owner = torch.repeat_interleave(torch.arange(len(self.pairs)), torch.tensor(counts))
        pixels = sum(p.hr.shape[0] * p.hr.shape[1] for p in self.pairs)
        self.description = description or f"{len(self.pairs)} images"
        self.description += f", {pixels / 1e6:.1f} MP, x{scale}, LR crops {lr_patch}x{lr_patch}"

    def __len__(self) -> int:
        return int(self.owner.numel())

    def crops(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices [B] -> (lr uint8 [B, 3, p, p], hr uint8 [B, 3, s*p, s*p])."""
        p, s = self.lr_patch, self.scale
        lrs, hrs = [], []
        for i in idx.tolist():
            k = int(self.owner[i])
            lr, hr = self.lr[k], self.hr[k]
            rng = np.random.default_rng((self.seed, i))
            y, x = int(rng.integers(0, lr.shape[1] - p + 1)), int(rng.integers(0, lr.shape[2] - p + 1))
            flip, rot = rng.integers(0, 2, size=2), int(rng.integers(0, 4))
            a, b = lr[:, y: y + p, x: x + p], hr[:, s * y: s * (y + p), s * x: s * (x + p)]
            if flip[0]:
                a, b = a.flip(-1), b.flip(-1)
            if flip[1]:
                a, b = a.flip(-2), b.flip(-2)
            lrs.append(torch.rot90(a, rot, (1, 2)))
            hrs.append(torch.rot90(b, rot, (1, 2)))
        return torch.stack(lrs), torch.stack(hrs)


def load_sr_dataset(cfg: DataConfig, *, scale: int, lr_patch: int, seed: int = 0) -> SRPatchSet:
    images = load_sr_images(cfg)
    where = ("scikit-image/scikit-learn photos: " + ", ".join(n for n, _ in images)
             if cfg.name == "sr-builtin" else f"folder {cfg.path}")
    return SRPatchSet(images, scale=scale, lr_patch=lr_patch, seed=seed,
                      description=f"{cfg.name} {cfg.split}, {len(images)} images ({where})")

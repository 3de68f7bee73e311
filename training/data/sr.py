"""Super-resolution data: high-resolution photos (the offline built-in set or a folder), their
bicubic (LR, HR) pairs, and the aligned random crops the training loop samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganserve.errors import UsageError
from ganserve.training.config import DataConfig
from ganserve.training.data.images import IMAGE_SUFFIXES

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

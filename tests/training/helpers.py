"""Helpers shared by the training tests: paths and small configs. A plain module, imported as
``tests.training.helpers``; the fixtures live in ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

from training.config import apply_overrides, preset

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def tiny_config(*overrides: str):
    """Seconds-long DCGAN on scikit-learn's 8x8 digits."""
    return apply_overrides(preset("dcgan-digits-tiny"), ["train.log_every=1", *overrides])


def write_photos(folder: Path) -> Path:
    """Three small RGB photos (crops of scikit-learn's china.jpg and flower.jpg) in ``folder``."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    for i, im in enumerate((china[:96, :128], china[200:296, 300:420], flower[100:200, 200:300])):
        Image.fromarray(im).save(folder / f"photo{i}.png")
    return folder

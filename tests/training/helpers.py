"""Helpers shared by the training tests: paths and small configs. A plain module, imported as
``tests.training.helpers``; the fixtures live in ``conftest.py``."""

from __future__ import annotations

from pathlib import Path

from ganserve.training.families import apply_overrides, validate
from ganserve.training.presets import preset

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def tiny_config(*overrides: str):
    """Seconds-long DCGAN on scikit-learn's 8x8 digits."""
    return apply_overrides(preset("dcgan-digits-tiny"), ["train.log_every=1", *overrides])


def sr_config(photo_dir: Path, *overrides: str):
    """Seconds-long SRResNet (x2, two blocks) on the photos in ``photo_dir``."""
    return validate(apply_overrides(preset("srresnet-tiny"), [
        "data.name=sr-folder", f"data.path={photo_dir}", "data.limit=none", "train.log_every=1", *overrides]))


def params(module) -> list:
    """Copies of a module's parameters, to compare before and after a step."""
    return [p.detach().clone() for p in module.parameters()]


def write_photos(folder: Path) -> Path:
    """Three small RGB photos (crops of scikit-learn's china.jpg and flower.jpg) in ``folder``."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    for i, im in enumerate((china[:96, :128], china[200:296, 300:420], flower[100:200, 200:300])):
        Image.fromarray(im).save(folder / f"photo{i}.png")
    return folder

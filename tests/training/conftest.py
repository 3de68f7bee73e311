"""Fixtures of the training tests (helpers are in ``tests.training.helpers``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.training.helpers import MNIST, write_photos
from training.data.captions import load_colour_mnist

torch.set_num_threads(1)  # tests are small; one thread each keeps the 2-core CI machine responsive


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"full MNIST not found at {MNIST} (../shared is absent)")
    return MNIST


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    yield
    os.environ.pop("MASTER_PORT", None)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Three small RGB photos: a super-resolution image folder."""
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def digits_set():
    """Captioned colour digits (scikit-learn's 8x8 digits, coloured): 400 images, 2 captions each."""
    return load_colour_mnist(None, source="digits", image_size=8, captions_per_image=2, limit=400)

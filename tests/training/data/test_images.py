"""ganserve.training.data.images: MNIST IDX files, image folders, scikit-learn digits, pixel ranges."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from ganserve.errors import UsageError
from ganserve.training.config import DataConfig
from ganserve.training.data.images import load_dataset, load_image_folder, load_mnist, to_uint8, to_unit_range


def write_idx(path, array, *, gz):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.fixture
def fake_mnist(tmp_path):
    rng = np.random.default_rng(0)
    for split, prefix, n in (("train", "train", 20), ("test", "t10k", 10)):
        gz = split == "train"  # one split gzipped, the other raw: both must load
        suffix = ".gz" if gz else ""
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), gz=gz)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, n), gz=gz)
    return tmp_path


def test_mnist_loads_gzipped_and_raw(fake_mnist):
    train, test = load_mnist(fake_mnist, split="train"), load_mnist(fake_mnist, split="test")
    assert train.images.shape == (20, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.images.shape == (10, 1, 28, 28) and test.labels.shape == (10,)


def test_full_mnist_from_shared(mnist_dir):
    train = load_mnist(mnist_dir, split="train")
    counts = torch.bincount(train.labels, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_missing_mnist_file_names_the_expected_files(fake_mnist):
    (fake_mnist / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UsageError, match="train-labels-idx1-ubyte.*not found.*t10k-images-idx3-ubyte"):
        load_mnist(fake_mnist)


def test_malformed_idx_is_reported(fake_mnist):
    (fake_mnist / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"x" * 7)
    with pytest.raises(UsageError, match="truncated or malformed"):
        load_mnist(fake_mnist, split="test")
    (fake_mnist / "t10k-images-idx3-ubyte").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(UsageError, match="not an unsigned-byte IDX file"):
        load_mnist(fake_mnist, split="test")


def test_mnist_needs_a_path():
    with pytest.raises(UsageError, match="needs a path"):
        load_dataset(DataConfig(name="mnist"), image_size=28, channels=1)


def test_image_folder_crops_resizes_and_converts(tmp_path):
    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.new("L", (64, 64), 128).save(tmp_path / "sub" / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, size=16, channels=3)
    assert data.images.shape == (2, 3, 16, 16)
    assert data.images[0, 0].float().mean() > 250 and data.images[0, 1].float().mean() < 5
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images"):
        load_image_folder(tmp_path / "empty", size=16, channels=3)


def test_corrupt_image_is_reported(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(UsageError, match="cannot decode image"):
        load_image_folder(tmp_path, size=8, channels=1)


def test_digits_are_resized_and_scaled():
    data = load_dataset(DataConfig(name="digits"), image_size=16, channels=3)
    assert data.images.shape == (1797, 3, 16, 16)
    x = to_unit_range(data.images[:4])
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(to_uint8(x), data.images[:4])



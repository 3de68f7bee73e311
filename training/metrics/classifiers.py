"""The measuring classifiers whose feature spaces the quality metrics use, trained by ganserve itself
(no Inception weights are available offline), and the one trainer both share.

- :class:`MnistClassifier` (``ganserve train-classifier --data DIR``): MNIST digits; its 128-d
  penultimate activations are the feature space of the DCGAN's FID/KID, its predicted digit gives mode
  coverage. Shipped as ``training/assets/mnist_classifier.pt``.
- :class:`AttributeClassifier` (``ganserve train-attribute-classifier --data DIR``): a digit head and a
  colour head, trained on real captioned colour MNIST (every (digit, colour) combination, held-out ones
  included: it is a measuring instrument, not part of the generator). Its features are the text-to-image
  FID's space. Shipped as ``training/assets/colour_mnist_attributes.pt``.

Both shipped files are pinned by their sha256, so figures computed anywhere use exactly the same network.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.errors import UsageError
from ganserve.training.data.captions import N_COLOURS, N_DIGITS, load_colour_mnist
from ganserve.training.data.images import load_mnist, to_unit_range
from ganserve.training.data.sampler import BatchSampler
from ganserve.training.progress import track

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MNIST_ASSET = ASSETS / "mnist_classifier.pt"
MNIST_SHA256 = "f73bf3058e33f5a4b754f4e5e052d29ada964d4bb22f8e639a3ceaf8c7293d3f"
ATTRIBUTES_ASSET = ASSETS / "colour_mnist_attributes.pt"
ATTRIBUTES_SHA256 = "124a1d446ede9a669f52ab3f175c8318d2d4799c5dc51635fc6ead5111032d53"  # test acc: digit 0.9788, colour 1.0000
M = TypeVar("M", bound="SmallCNN")


class SmallCNN(nn.Module):
    """The trunk of the measuring classifiers: two conv + max-pool stages and a 128-d dense layer, for
    28 x 28 inputs. Subclasses add their heads and name them in :meth:`head_logits`."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 14 x 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),            # 64 x 7 x 7
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())  # features: 128

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, 28, 28] in [-1, 1] -> features [B, 128]."""
        return self.fc(self.conv(x))

    def head_logits(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """features [B, 128] -> logits [B, classes] per head, by the name of what the head predicts."""
        raise NotImplementedError


class MnistClassifier(SmallCNN):
    def __init__(self) -> None:
        super().__init__(in_channels=1)
        self.out = nn.Linear(128, 10)

    def head_logits(self, features):
        return {"digit": self.out(features)}

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 1, 28, 28] in [-1, 1] -> (features [B, 128], logits [B, 10])."""
        f = self.features(x)
        return f, self.out(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]


class AttributeClassifier(SmallCNN):
    def __init__(self) -> None:
        super().__init__(in_channels=3)
        self.digit = nn.Linear(128, N_DIGITS)
        self.colour = nn.Linear(128, N_COLOURS)

    def head_logits(self, features):
        return {"digit": self.digit(features), "colour": self.colour(features)}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, 3, 28, 28] in [-1, 1] -> (features [B, 128], digit logits [B, 10], colour logits [B, 9])."""
        f = self.features(x)
        return f, self.digit(f), self.colour(f)


# ---------------------------------------------------------------- the pinned, shipped networks
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_pinned(net: M, path: Path, *, expected_sha256: str | None, what: str, command: str) -> M:
    """``net`` with the weights of ``path``, refused unless the file has the pinned hash (figures
    computed with another network would not be comparable). ``command`` builds the file."""
    if not path.is_file():
        raise UsageError(f"{what} {path} is missing; build it with `{command}`")
    if expected_sha256 is not None and sha256(path) != expected_sha256:
        raise UsageError(f"{what} {path} has sha256 {sha256(path)}, expected {expected_sha256}: "
                         "metrics would not be comparable with published ones")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


@lru_cache(maxsize=1)
def load_classifier(path: Path = MNIST_ASSET, *, expected_sha256: str | None = MNIST_SHA256) -> MnistClassifier:
    return load_pinned(MnistClassifier(), path, expected_sha256=expected_sha256, what="feature classifier",
                       command="ganserve train-classifier --data DIR")


@lru_cache(maxsize=1)
def load_attribute_classifier(path: Path = ATTRIBUTES_ASSET, *,
                              expected_sha256: str | None = ATTRIBUTES_SHA256) -> AttributeClassifier:
    return load_pinned(AttributeClassifier(), path, expected_sha256=expected_sha256, what="attribute classifier",
                       command="ganserve train-attribute-classifier --data DIR")


@torch.no_grad()
def readout(net: AttributeClassifier, images: torch.Tensor, *, batch: int = 500):
    """uint8 [N, 3, 28, 28] -> (features [N, 128] float64 numpy, digit probabilities [N, 10], colour
    probabilities [N, 9])."""
    feats, digits, colours = [], [], []
    for i in track(range(0, images.shape[0], batch), desc=f"scoring {images.shape[0]} images"):
        f, d, c = net(to_unit_range(images[i: i + batch]))
        feats.append(f.double())
        digits.append(d.softmax(1))
        colours.append(c.softmax(1))
    return torch.cat(feats).numpy(), torch.cat(digits), torch.cat(colours)


def classify(net: AttributeClassifier, images: torch.Tensor, *, batch: int = 500):
    """uint8 [N, 3, 28, 28] -> (features [N, 128] float64 numpy, digit [N], colour [N])."""
    feats, digits, colours = readout(net, images, batch=batch)
    return feats, digits.argmax(1), colours.argmax(1)


# ---------------------------------------------------------------- the one trainer
def random_shift(x: torch.Tensor, *, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """The training augmentation of the measuring classifiers: the batch translated (cyclically) by
    up to ``max_shift`` pixels in x and y."""
    if not max_shift:
        return x
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def fit(net: SmallCNN, images: torch.Tensor, targets: dict[str, torch.Tensor], *, epochs: int, batch_size: int,
        seed: int, augment_shift: int) -> SmallCNN:
    """Train ``net`` (freshly built after ``torch.manual_seed(seed)``) on uint8 ``images`` [N, C, 28, 28]:
    Adam, small random translations, the sum of each head's cross-entropy against ``targets[head]`` [N]."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sampler = BatchSampler(len(images), batch_size=batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs * (len(images) // batch_size)):
        idx = sampler.next_indices()
        x = random_shift(to_unit_range(images[idx]), max_shift=augment_shift, gen=g)
        logits = net.head_logits(net.features(x))
        losses = [F.cross_entropy(logits[head], targets[head][idx]) for head in targets]
        loss = sum(losses[1:], losses[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: SmallCNN, images: torch.Tensor, targets: dict[str, torch.Tensor], *,
             batch: int = 1000) -> dict[str, float]:
    """Each head's accuracy on uint8 ``images`` against ``targets[head]``."""
    preds: dict[str, list[torch.Tensor]] = {head: [] for head in targets}
    for i in range(0, len(images), batch):
        logits = net.head_logits(net.features(to_unit_range(images[i: i + batch])))
        for head in targets:
            preds[head].append(logits[head].argmax(1))
    return {head: float((torch.cat(p) == targets[head]).float().mean()) for head, p in preds.items()}


def train_classifier(data: str | Path, *, epochs: int = 3, batch_size: int = 128, seed: int = 0,
                     augment_shift: int = 2) -> tuple[MnistClassifier, float]:
    """The MNIST classifier from the MNIST folder ``data``, and its test accuracy."""
    train, test = load_mnist(data, split="train"), load_mnist(data, split="test")
    torch.manual_seed(seed)
    net = fit(MnistClassifier(), train.images, {"digit": train.labels}, epochs=epochs, batch_size=batch_size,
              seed=seed, augment_shift=augment_shift)
    return net, accuracy(net, test.images, {"digit": test.labels})["digit"]


def train_attribute_classifier(data: str | Path, *, epochs: int = 2, batch_size: int = 128, seed: int = 0,
                               augment_shift: int = 2) -> tuple[AttributeClassifier, float, float]:
    """The attribute classifier from colour MNIST made of the MNIST folder ``data`` (every combination),
    and its digit and colour accuracy on the colour-MNIST test split."""
    train = load_colour_mnist(data, split="train", seed=seed, captions_per_image=1, heldout=False)
    test = load_colour_mnist(data, split="test", seed=seed, captions_per_image=1, heldout=False)
    torch.manual_seed(seed)
    net = fit(AttributeClassifier(), train.images, train.attributes, epochs=epochs, batch_size=batch_size,
              seed=seed, augment_shift=augment_shift)
    acc = accuracy(net, test.images, test.attributes, batch=500)
    return net, acc["digit"], acc["colour"]

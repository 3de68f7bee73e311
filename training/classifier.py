"""The MNIST classifier whose feature space the quality metrics use, trained by ganserve itself.

``ganserve train-classifier --data DIR`` trains it (seeded) and writes
``training/assets/mnist_classifier.pt``; the shipped file is pinned by :data:`CLASSIFIER_SHA256`, so
metrics computed anywhere use exactly the same network. The 128-d penultimate activations are the
features; the logits give the predicted digit for mode coverage.
"""

from __future__ import annotations

import hashlib
import time
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.errors import UsageError
from training.data.images import load_mnist, to_unit_range
from training.data.sampler import BatchSampler

ASSET = Path(__file__).parent / "assets" / "mnist_classifier.pt"
M = TypeVar("M", bound=nn.Module)
CLASSIFIER_SHA256 = "f73bf3058e33f5a4b754f4e5e052d29ada964d4bb22f8e639a3ceaf8c7293d3f"


class SmallCNN(nn.Module):
    """The trunk of the project's measuring classifiers (this one, and the colour-MNIST attribute
    classifier): two conv + max-pool stages and a 128-d dense layer, for 28 x 28 inputs."""

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


class MnistClassifier(SmallCNN):
    def __init__(self) -> None:
        super().__init__(in_channels=1)
        self.out = nn.Linear(128, 10)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, 1, 28, 28] in [-1, 1] -> (features [B, 128], logits [B, 10])."""
        f = self.features(x)
        return f, self.out(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(x)[1]


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
def load_classifier(path: Path = ASSET, *, expected_sha256: str | None = CLASSIFIER_SHA256) -> MnistClassifier:
    return load_pinned(MnistClassifier(), path, expected_sha256=expected_sha256, what="feature classifier",
                       command="ganserve train-classifier --data DIR")


def random_shift(x: torch.Tensor, *, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """The training augmentation of the measuring classifiers: the batch translated (cyclically) by
    up to ``max_shift`` pixels in x and y."""
    if not max_shift:
        return x
    dx, dy = torch.randint(-max_shift, max_shift + 1, (2,), generator=gen).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train_classifier(data: str | Path, *, epochs: int = 3, batch_size: int = 128, seed: int = 0,
                     augment_shift: int = 2) -> tuple[MnistClassifier, float]:
    """Adam, small random translations; returns the network and its test accuracy."""
    torch.manual_seed(seed)
    train, test = load_mnist(data, split="train"), load_mnist(data, split="test")
    net = MnistClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sampler = BatchSampler(len(train), batch_size=batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    steps = epochs * (len(train) // batch_size)
    for step in range(steps):
        idx = sampler.next_indices()
        x = random_shift(to_unit_range(train.images[idx]), max_shift=augment_shift, gen=g)
        loss = F.cross_entropy(net(x), train.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(to_unit_range(test.images[i: i + 1000])).argmax(1) for i in range(0, len(test), 1000)])
    return net, float((pred == test.labels).float().mean())


def cli(argv: list[str]) -> int:
    from training.cli import _Parser

    p = _Parser(prog="ganserve train-classifier", description="Train the MNIST feature classifier.")
    p.add_argument("--data", required=True, help="MNIST folder")
    p.add_argument("--out", default=str(ASSET))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    started = time.perf_counter()
    net, acc = train_classifier(args.data, epochs=args.epochs, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    print(f"test accuracy {acc:.4f}; wrote {out} (sha256 {sha256(out)}) in {time.perf_counter() - started:.0f}s")
    return 0

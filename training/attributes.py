"""The colour-MNIST attribute classifier: a small CNN with a digit head and a colour head, trained by
ganserve on real captioned colour MNIST (every (digit, colour) combination, held-out ones included:
it is a measuring instrument, not part of the generator). Its 128-d penultimate activations are the
feature space of the text-to-image FID.

``ganserve train-attribute-classifier --data DIR`` writes ``training/assets/colour_mnist_attributes.pt``;
the shipped file is pinned by :data:`ATTRIBUTES_SHA256`, so figures computed anywhere are comparable.
"""

from __future__ import annotations

import hashlib
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganserve.errors import UsageError
from training.data import BatchSampler, to_unit_range
from training.text2img_data import N_COLOURS, N_DIGITS, load_colour_mnist

ASSET = Path(__file__).parent / "assets" / "colour_mnist_attributes.pt"
ATTRIBUTES_SHA256 = "124a1d446ede9a669f52ab3f175c8318d2d4799c5dc51635fc6ead5111032d53"  # test acc: digit 0.9788, colour 1.0000


class AttributeClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 14 x 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 7 x 7
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())  # features: 128
        self.digit = nn.Linear(128, N_DIGITS)
        self.colour = nn.Linear(128, N_COLOURS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, 3, 28, 28] in [-1, 1] -> (features [B, 128], digit logits [B, 10], colour logits [B, 9])."""
        f = self.fc(self.conv(x))
        return f, self.digit(f), self.colour(f)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=1)
def load_attribute_classifier(path: Path = ASSET, *,
                              expected_sha256: str | None = ATTRIBUTES_SHA256) -> AttributeClassifier:
    if not path.is_file():
        raise UsageError(f"attribute classifier {path} is missing; build it with "
                         "`ganserve train-attribute-classifier --data DIR`")
    if expected_sha256 is not None and sha256(path) != expected_sha256:
        raise UsageError(f"attribute classifier {path} has sha256 {sha256(path)}, expected {expected_sha256}: "
                         "figures would not be comparable with published ones")
    net = AttributeClassifier()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


@torch.no_grad()
def classify(net: AttributeClassifier, images: torch.Tensor, *, batch: int = 500):
    """uint8 [N, 3, 28, 28] -> (features [N, 128] float64 numpy, digit [N], colour [N])."""
    feats, digits, colours = [], [], []
    for i in range(0, images.shape[0], batch):
        f, d, c = net(to_unit_range(images[i: i + batch]))
        feats.append(f.double())
        digits.append(d.argmax(1))
        colours.append(c.argmax(1))
    return torch.cat(feats).numpy(), torch.cat(digits), torch.cat(colours)


def train_attribute_classifier(data: str | Path, *, epochs: int = 2, batch_size: int = 128, seed: int = 0,
                               augment_shift: int = 2) -> tuple[AttributeClassifier, float, float]:
    """Adam, small random translations; returns the network and its digit / colour accuracy on the
    colour-MNIST test split (every combination)."""
    torch.manual_seed(seed)
    train = load_colour_mnist(data, split="train", seed=seed, captions_per_image=1, heldout=False)
    test = load_colour_mnist(data, split="test", seed=seed, captions_per_image=1, heldout=False)
    net = AttributeClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sampler = BatchSampler(len(train), batch_size=batch_size, seed=seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs * (len(train) // batch_size)):
        idx = sampler.next_indices()
        x = to_unit_range(train.images[idx])
        if augment_shift:
            dx, dy = torch.randint(-augment_shift, augment_shift + 1, (2,), generator=g).tolist()
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        _, d, c = net(x)
        loss = F.cross_entropy(d, train.attributes["digit"][idx]) + F.cross_entropy(c, train.attributes["colour"][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    _, d, c = classify(net, test.images)
    return (net, float((d == test.attributes["digit"]).float().mean()),
            float((c == test.attributes["colour"]).float().mean()))


def cli(argv: list[str]) -> int:
    from training.cli import _Parser

    p = _Parser(prog="ganserve train-attribute-classifier",
                description="Train the colour-MNIST digit/colour classifier used by the text-to-image metrics.")
    p.add_argument("--data", required=True, help="MNIST folder")
    p.add_argument("--out", default=str(ASSET))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    started = time.perf_counter()
    net, digit_acc, colour_acc = train_attribute_classifier(args.data, epochs=args.epochs, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    print(f"test accuracy: digit {digit_acc:.4f}, colour {colour_acc:.4f}; wrote {out} (sha256 {sha256(out)}) "
          f"in {time.perf_counter() - started:.0f}s")
    return 0

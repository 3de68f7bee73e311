"""The colour-MNIST attribute classifier: a small CNN with a digit head and a colour head, trained by
ganserve on real captioned colour MNIST (every (digit, colour) combination, held-out ones included:
it is a measuring instrument, not part of the generator). Its 128-d penultimate activations are the
feature space of the text-to-image FID.

``ganserve train-attribute-classifier --data DIR`` writes ``training/assets/colour_mnist_attributes.pt``;
the shipped file is pinned by :data:`ATTRIBUTES_SHA256`, so figures computed anywhere are comparable.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.classifier import SmallCNN, load_pinned, random_shift, sha256
from training.data.captions import N_COLOURS, N_DIGITS, load_colour_mnist
from training.data.images import to_unit_range
from training.data.sampler import BatchSampler

ASSET = Path(__file__).parent / "assets" / "colour_mnist_attributes.pt"
ATTRIBUTES_SHA256 = "124a1d446ede9a669f52ab3f175c8318d2d4799c5dc51635fc6ead5111032d53"  # test acc: digit 0.9788, colour 1.0000


class AttributeClassifier(SmallCNN):
    def __init__(self) -> None:
        super().__init__(in_channels=3)
        self.digit = nn.Linear(128, N_DIGITS)
        self.colour = nn.Linear(128, N_COLOURS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, 3, 28, 28] in [-1, 1] -> (features [B, 128], digit logits [B, 10], colour logits [B, 9])."""
        f = self.features(x)
        return f, self.digit(f), self.colour(f)


@lru_cache(maxsize=1)
def load_attribute_classifier(path: Path = ASSET, *,
                              expected_sha256: str | None = ATTRIBUTES_SHA256) -> AttributeClassifier:
    return load_pinned(AttributeClassifier(), path, expected_sha256=expected_sha256, what="attribute classifier",
                       command="ganserve train-attribute-classifier --data DIR")


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
        x = random_shift(to_unit_range(train.images[idx]), max_shift=augment_shift, gen=g)
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

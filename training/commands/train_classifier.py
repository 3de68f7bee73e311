"""``ganserve train-classifier``: train the MNIST classifier whose features the unconditional metrics use."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ganserve.training.metrics.classifiers import MNIST_ASSET, sha256, train_classifier
from ganserve.usage import UsageParser


def classifier_parser(prog: str, description: str, *, out: Path, epochs: int) -> UsageParser:
    """The options of both measuring classifiers' commands (``out``: the pinned asset they rebuild)."""
    p = UsageParser(prog=prog, description=description)
    p.add_argument("--data", required=True, help="MNIST folder")
    p.add_argument("--out", default=str(out))
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str]) -> int:
    args = classifier_parser("ganserve train-classifier", "Train the MNIST feature classifier.", out=MNIST_ASSET,
                             epochs=3).parse_args(argv)
    started = time.perf_counter()
    net, acc = train_classifier(args.data, epochs=args.epochs, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    print(f"test accuracy {acc:.4f}; wrote {out} (sha256 {sha256(out)}) in {time.perf_counter() - started:.0f}s")
    return 0

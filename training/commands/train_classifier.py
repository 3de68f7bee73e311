"""``ganserve train-classifier``: train the MNIST classifier whose features the unconditional metrics use."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ganserve.usage import UsageParser
from training.metrics.classifiers import MNIST_ASSET, sha256, train_classifier


def main(argv: list[str]) -> int:
    p = UsageParser(prog="ganserve train-classifier", description="Train the MNIST feature classifier.")
    p.add_argument("--data", required=True, help="MNIST folder")
    p.add_argument("--out", default=str(MNIST_ASSET))
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

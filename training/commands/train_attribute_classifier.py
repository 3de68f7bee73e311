"""``ganserve train-attribute-classifier``: train the colour-MNIST digit/colour classifier that the
text-to-image metrics use."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ganserve.training.commands.train_classifier import classifier_parser
from ganserve.training.metrics.classifiers import ATTRIBUTES_ASSET, sha256, train_attribute_classifier


def main(argv: list[str]) -> int:
    args = classifier_parser("ganserve train-attribute-classifier", "Train the colour-MNIST digit/colour classifier "
                             "used by the text-to-image metrics.", out=ATTRIBUTES_ASSET, epochs=2).parse_args(argv)
    started = time.perf_counter()
    net, digit_acc, colour_acc = train_attribute_classifier(args.data, epochs=args.epochs, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    print(f"test accuracy: digit {digit_acc:.4f}, colour {colour_acc:.4f}; wrote {out} (sha256 {sha256(out)}) "
          f"in {time.perf_counter() - started:.0f}s")
    return 0

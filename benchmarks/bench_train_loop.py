"""Training throughput: ganserve's loop vs a plain PyTorch DCGAN step of the same architecture.

The plain step is written the obvious way (pytorch/examples dcgan style: BCEWithLogitsLoss, labels,
D on real then on the detached fake, G on the same fake). Both train the same networks on the same
in-memory MNIST batches; they run in alternating blocks in one process so that anything else the
machine is doing affects both alike. Reports images/s (median over blocks) and the ratio.

    .venv/bin/python benchmarks/bench_train_loop.py --data ../shared/data/mnist [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ganserve.training.callbacks import FailureDetector, JsonlLogger
from ganserve.training.data.images import load_dataset, to_unit_range
from ganserve.training.families import apply_overrides, get_family
from ganserve.training.loop import Trainer, machine_description
from ganserve.training.presets import preset


def plain_dcgan(cfg, data, device, *, batch_size: int):
    family = get_family(cfg)
    G, D = family.build_generator().to(device), family.build_discriminator().to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = nn.BCEWithLogitsLoss()
    nz = cfg.model.latent_dim

    def step():
        idx = torch.randint(0, len(data), (batch_size,))
        real = to_unit_range(data.images[idx].to(device))
        ones = torch.ones(batch_size, device=device)
        zeros = torch.zeros(batch_size, device=device)
        # (1) update D: maximise log(D(x)) + log(1 - D(G(z)))
        D.zero_grad()
        err_real = criterion(D(real), ones)
        err_real.backward()
        fake = G(torch.randn(batch_size, nz, device=device))
        err_fake = criterion(D(fake.detach()), zeros)
        err_fake.backward()
        opt_d.step()
        # (2) update G: maximise log(D(G(z)))
        G.zero_grad()
        err_g = criterion(D(fake), ones)
        err_g.backward()
        opt_g.step()
        return err_real.item() + err_fake.item(), err_g.item()

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--steps-per-block", type=int, default=40)
    p.add_argument("--json", help="write the result here")
    args = p.parse_args()
    cfg = apply_overrides(preset("dcgan-mnist"), [f"data.path={args.data}", f"train.device={args.device}",
                                                  f"train.batch_size={args.batch_size}", "train.steps=1000000",
                                                  "train.checkpoint_every=1000000", "train.sample_every=1000000"])
    device = torch.device(args.device)
    data = load_dataset(cfg.data, image_size=28, channels=1)
    plain = plain_dcgan(cfg, data, device, batch_size=args.batch_size)
    out = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    trainer = Trainer(cfg, out_dir=out, data=data, callbacks=[JsonlLogger(out / "log.jsonl"), FailureDetector()])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # warm-up both
    for _ in range(5):
        plain()
    trainer.fit(until=trainer.state.step + 5)
    rates: dict[str, list[float]] = {"plain": [], "loop": []}
    for _ in range(args.blocks):
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps_per_block):
            plain()
        sync()
        rates["plain"].append(args.steps_per_block * args.batch_size / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        trainer.fit(until=trainer.state.step + args.steps_per_block)
        sync()
        rates["loop"].append(args.steps_per_block * args.batch_size / (time.perf_counter() - t0))
    result = {
        "plain_images_per_s": statistics.median(rates["plain"]),
        "loop_images_per_s": statistics.median(rates["loop"]),
        "blocks": rates,
        "machine": machine_description(),
        "device": args.device,
        "batch_size": args.batch_size,
        "python": platform.python_version(),
    }
    result["ratio"] = result["loop_images_per_s"] / result["plain_images_per_s"]
    print(f"plain PyTorch DCGAN step: {result['plain_images_per_s']:.0f} images/s")
    print(f"ganserve loop (EMA, logging, failure detection): {result['loop_images_per_s']:.0f} images/s")
    print(f"ratio loop / plain: {result['ratio']:.3f}  ({result['machine']}, device {args.device})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()

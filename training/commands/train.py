"""``ganserve train``: train a generator family from a preset and ``--set`` overrides (also under
``torchrun``, one process per GPU)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from ganserve.errors import UsageError
from ganserve.training.callbacks import default_callbacks
from ganserve.training.config import RunConfig
from ganserve.training.families import apply_overrides, validate
from ganserve.training.loop import Trainer
from ganserve.training.presets import PRESETS, preset
from ganserve.training.progress import breakdown, process_age
from ganserve.usage import UsageParser


def parser() -> UsageParser:
    p = UsageParser(prog="ganserve train", description="Train a generator family from a preset.")
    p.add_argument("--preset", default="dcgan-mnist", help=f"one of: {', '.join(PRESETS)}")
    p.add_argument("--data", help="data folder (mnist: the IDX files; image-folder: images)")
    p.add_argument("--out", default="runs/dcgan", help="run folder: checkpoint, log, samples, curves")
    p.add_argument("--steps", type=int, help="generator steps (overrides the preset)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--loss", help="bce | hinge | lsgan | wgan-gp")
    p.add_argument("--device", help="cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set train.lr_d=4e-4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (logs still written; there is none when stderr is not a terminal)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def build_config(args: argparse.Namespace) -> RunConfig:
    """The preset, then ``--set`` overrides, then the shortcut flags (--data, --steps, ...), validated."""
    cfg = preset(args.preset)
    overrides = list(args.overrides)
    for flag, key in (("data", "data.path"), ("steps", "train.steps"), ("batch_size", "train.batch_size"),
                      ("loss", "train.loss"), ("device", "train.device"), ("seed", "train.seed")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return validate(apply_overrides(cfg, overrides))


def main(argv: list[str]) -> int:
    started = time.perf_counter() - (process_age() or 0.0)  # the process's start: imports count too
    args = parser().parse_args(argv)
    cfg = build_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    out = Path(args.out)
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not args.resume:
        raise UsageError(f"{ckpt} exists: pass --resume to continue it, or choose another --out")
    trainer = Trainer(cfg, out_dir=out, callbacks=default_callbacks(out, progress=False if args.no_progress else None),
                      meta={"argv": "ganserve train " + shlex.join(argv)})
    if args.resume:
        trainer.load_checkpoint(ckpt)
    if trainer.dist.is_main:
        (out / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        print(f"training {cfg.model.family} on {trainer.data.description}: step {trainer.state.step} -> "
              f"{cfg.train.steps}, {trainer.dist.world} process(es) on {trainer.device}; run folder {out}",
              file=sys.stderr)
    first_step, fit_started = trainer.state.step, time.perf_counter()
    finished = False
    try:
        trainer.fit()
        finished = True
    except KeyboardInterrupt:
        return 130
    finally:
        trainer.close(clean=finished)  # after an error the other ranks may never reach a barrier
    if trainer.dist.is_main:
        steps = trainer.state.step - first_step
        upto = f" (to step {trainer.state.step})" if first_step else ""
        # wall time, and what the time beside the steps went into (sample grids, checkpoints, ...)
        parts = {"imports and set-up": fit_started - started, **trainer.timings}
        print(f"done: {steps} steps{upto} in {breakdown(time.perf_counter() - started, parts)}; checkpoint {ckpt}",
              file=sys.stderr)
    return 0

"""``ganserve train | export | evaluate``: the training side of the command line."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ganserve.errors import UsageError
from ganserve.usage import UsageParser as _Parser


def _train_parser() -> argparse.ArgumentParser:
    from training.presets import PRESETS

    p = _Parser(prog="ganserve train", description="Train a generator family from a preset.")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still written)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p


def build_config(args: argparse.Namespace):
    from training.families import apply_overrides, validate
    from training.presets import preset

    cfg = preset(args.preset)
    overrides = list(args.overrides)
    for flag, key in (("data", "data.path"), ("steps", "train.steps"), ("batch_size", "train.batch_size"),
                      ("loss", "train.loss"), ("device", "train.device"), ("seed", "train.seed")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    return validate(apply_overrides(cfg, overrides))


def cmd_train(argv: list[str]) -> int:
    args = _train_parser().parse_args(argv)
    cfg = build_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from training.callbacks import default_callbacks
    from training.loop import Trainer

    out = Path(args.out)
    ckpt = out / "checkpoint.pt"
    if ckpt.exists() and not args.resume:
        raise UsageError(f"{ckpt} exists: pass --resume to continue it, or choose another --out")
    trainer = Trainer(cfg, out_dir=out, callbacks=default_callbacks(out, progress=not args.no_progress),
                      meta={"argv": "ganserve train " + shlex.join(argv)})
    if args.resume:
        trainer.load_checkpoint(ckpt)
    if trainer.dist.is_main:
        (out / "config.json").parent.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        print(f"training {cfg.model.family} on {trainer.data.description}: step {trainer.state.step} -> "
              f"{cfg.train.steps}, {trainer.dist.world} process(es) on {trainer.device}; run folder {out}",
              file=sys.stderr)
    finished = False
    try:
        trainer.fit()
        finished = True
    except KeyboardInterrupt:
        return 130
    finally:
        trainer.close(clean=finished)  # after an error the other ranks may never reach a barrier
    if trainer.dist.is_main:
        print(f"done: {trainer.state.step} steps in {trainer.state.wall_time:.0f}s; checkpoint {ckpt}",
              file=sys.stderr)
    return 0


def cmd_train_text_encoder(argv: list[str]) -> int:
    import shlex

    from training.families import apply_overrides, get_family, validate
    from training.families.gan_int_cls import pretrain, save_encoder
    from training.presets import preset

    p = _Parser(prog="ganserve train-text-encoder",
                description="Pre-train the char-CNN-RNN text encoder with the joint image-text embedding.")
    p.add_argument("--preset", default="text2img-colour-mnist", help="a gan-int-cls preset (data and model)")
    p.add_argument("--data", help="data folder (colour-mnist: the MNIST IDX files)")
    p.add_argument("--out", required=True, help="where to write the encoder (.pt)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"data.path={args.data}"] if args.data else [])
    cfg = validate(apply_overrides(preset(args.preset), overrides))
    if cfg.model.family != "gan-int-cls":
        raise UsageError(f"preset {args.preset} is not a gan-int-cls preset")
    if args.steps < 1 or args.batch_size < 2:
        raise UsageError("--steps must be >= 1 and --batch-size >= 2")
    family = get_family(cfg)
    data = family.load_captioned()
    result = pretrain(data, family.encoder_config(), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed)
    out = save_encoder(result, args.out, meta={"argv": "ganserve train-text-encoder " + shlex.join(argv)})
    print(f"wrote {out}: {result.steps} steps in {result.wall_time:.0f}s; held-out prompts read correctly "
          f"by the attribute probes: {result.probe_accuracy:.3f}")
    return 0


def main(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    if command == "train":
        return cmd_train(rest)
    if command == "export":
        from training.export import cli as export_cli

        return export_cli(rest)
    if command == "train-classifier":
        from training.commands import train_classifier

        return train_classifier.main(rest)
    if command == "train-text-encoder":
        return cmd_train_text_encoder(rest)
    if command == "train-attribute-classifier":
        from training.commands import train_attribute_classifier

        return train_attribute_classifier.main(rest)
    if command == "evaluate":
        from training.commands import evaluate

        return evaluate.main(rest)
    raise UsageError(f"unknown training command {command!r}")

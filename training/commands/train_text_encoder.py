"""``ganserve train-text-encoder``: pre-train the text-to-image text encoder (GAN-INT-CLS's char-CNN-RNN)
with the joint image-text embedding; ``ganserve train --set train.text_encoder=FILE`` then uses it.
``--from-onnx`` takes an exported encoder's weights instead (a generator retrained against a shipped
encoder keeps its embedding space)."""

from __future__ import annotations

import shlex

from ganserve.errors import UsageError
from ganserve.training.families import apply_overrides, get_family, validate
from ganserve.training.families.gan_int_cls import encoder_from_onnx, pretrain, save_encoder
from ganserve.training.presets import preset
from ganserve.usage import UsageParser


def main(argv: list[str]) -> int:
    p = UsageParser(prog="ganserve train-text-encoder",
                    description="Pre-train the char-CNN-RNN text encoder with the joint image-text embedding.")
    p.add_argument("--preset", default="text2img-colour-mnist", help="a gan-int-cls preset (data and model)")
    p.add_argument("--data", help="data folder (colour-mnist: the MNIST IDX files)")
    p.add_argument("--out", required=True, help="where to write the encoder (.pt)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE")
    p.add_argument("--from-onnx", metavar="ENCODER.onnx",
                   help="do not train: take the weights of this exported text encoder (e.g. "
                        "model_repository/text2img_encoder/1/model.onnx), exactly")
    args = p.parse_args(argv)
    overrides = list(args.overrides) + ([f"data.path={args.data}"] if args.data else [])
    cfg = validate(apply_overrides(preset(args.preset), overrides))
    if cfg.model.family != "gan-int-cls":
        raise UsageError(f"preset {args.preset} is not a gan-int-cls preset")
    if args.steps < 1 or args.batch_size < 2:
        raise UsageError("--steps must be >= 1 and --batch-size >= 2")
    family = get_family(cfg)
    meta = {"argv": "ganserve train-text-encoder " + shlex.join(argv)}
    if args.from_onnx:
        result = encoder_from_onnx(args.from_onnx, family.encoder_config())
        out = save_encoder(result, args.out, meta={**meta, "from_onnx": args.from_onnx})
        print(f"wrote {out}: the weights of {args.from_onnx} ({result.steps} steps of training on {result.description})")
        return 0
    data = family.load_captioned()
    result = pretrain(data, family.encoder_config(), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed)
    out = save_encoder(result, args.out, meta=meta)
    print(f"wrote {out}: {result.steps} steps in {result.wall_time:.0f}s; held-out prompts read correctly "
          f"by the attribute probes: {result.probe_accuracy:.3f}")
    return 0

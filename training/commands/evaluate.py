"""``ganserve evaluate MODEL [options]``: the quality metrics of the model's kind.

The kind comes from the model itself (:func:`ganserve.training.checkpoint.model_kind`: a checkpoint's family, an
ONNX file's ``ganserve.kind``) and chooses one entry of :data:`EVALUATORS`, which holds that kind's
options and report; ``ganserve evaluate MODEL --help`` lists the options for that model.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ganserve.errors import UsageError
from ganserve.training.checkpoint import model_kind
from ganserve.training.metrics import super_resolution, text_conditional, unconditional
from ganserve.training.progress import bars, wanted
from ganserve.usage import UsageParser


@dataclass(frozen=True)
class Evaluator:
    description: str
    add_options: Callable[[argparse.ArgumentParser], None]   # the kind's options, after MODEL
    run: Callable[[argparse.Namespace], None]                # prints the report, writes --json


def _unconditional_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="MNIST folder (the test split is the reference set); not needed for a model "
                                  "of scikit-learn's 8x8 digits (the tiny presets), measured against those")
    p.add_argument("--samples", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0, help="first seed: images use seeds SEED .. SEED+SAMPLES-1")
    p.add_argument("--no-references", action="store_true", help="skip the real-data reference points")
    p.add_argument("--truncation-curve", action="store_true",
                   help="also measure at truncation t = " + ", ".join(
                       f"{t:g}" for t in unconditional.TRUNCATIONS if t is not None) +
                   " (the gateway's truncation, same seeds); one more generation and scoring per point")


def _unconditional(args: argparse.Namespace) -> None:
    truncations = tuple(t for t in unconditional.TRUNCATIONS if t is not None) if args.truncation_curve else ()
    reports = unconditional.evaluate(args.model, data=args.data, samples=args.samples, seed=args.seed,
                                     references=not args.no_references, truncations=truncations)
    print(unconditional.format_reports(reports))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in reports], indent=2) + "\n")


def _super_resolution_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="folder of held-out HR images (default: the built-in held-out photos)")
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--no-tiling", action="store_true",
                   help="skip comparing tiled upscaling (the model's tile size and overlap) with whole images")
    p.add_argument("--compare", metavar="MODEL",
                   help="another super-resolution model (checkpoint or .onnx) measured alongside, e.g. the "
                        "SRResNet an SRGAN was fine-tuned from")
    p.add_argument("--samples", metavar="PNG",
                   help="also write a sample sheet: LR, bicubic, [--compare model,] this model and HR crops of "
                        "each held-out image side by side")


def _super_resolution(args: argparse.Namespace) -> None:
    report = super_resolution.evaluate(args.model, data=args.data, limit=args.limit, tiling=not args.no_tiling,
                                       compare=args.compare)
    print(super_resolution.format_report(report))
    if args.samples:
        path = super_resolution.sample_sheet(args.model, args.samples, data=args.data, limit=args.limit,
                                             compare=args.compare)
        print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(super_resolution.report_to_json(report), indent=2) + "\n")


def _text_conditional_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="MNIST folder (real references: test digits, coloured); not needed for a model of "
                                  "8x8 colour digits (text2img-tiny), measured against scikit-learn's digits")
    p.add_argument("--per-seen", type=int, default=50, help="images per seen combination (80 of them)")
    p.add_argument("--per-heldout", type=int, default=200, help="images per held-out combination (10)")
    p.add_argument("--seeds", type=int, default=8, help="seeds per prompt for the per-prompt diversity")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encoder", help="exported generator .onnx only: its text encoder .onnx (default: the "
                                     "<name>_encoder beside <name>_generator in the repository)")


def _text_conditional(args: argparse.Namespace) -> None:
    report = text_conditional.evaluate(args.model, args.data, per_seen=args.per_seen,
                                       per_heldout=args.per_heldout, seeds=args.seeds, seed=args.seed,
                                       encoder=args.encoder)
    print(text_conditional.format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


EVALUATORS: dict[str, Evaluator] = {
    "unconditional": Evaluator("FID, KID and mode coverage in the feature space of ganserve's MNIST "
                               "classifier, with reference points.", _unconditional_options, _unconditional),
    "super-resolution": Evaluator("PSNR/SSIM (Y channel) and sharpness (high-frequency energy relative to "
                                  "the HR image) of a super-resolution model on held-out images, next to "
                                  "bicubic upscaling (and --compare MODEL).", _super_resolution_options, _super_resolution),
    "text-conditional": Evaluator("Text-to-image: attribute accuracy on held-out prompts (seen and held-out "
                                  "combinations), FID, per-prompt diversity over seeds and the prompt-mix curve, "
                                  "by ganserve's colour-MNIST attribute classifier.",
                                  _text_conditional_options, _text_conditional),
}
# an exported text-to-image generator (with its encoder beside it) is measured like its checkpoint
EVALUATORS["text-conditional-generator"] = EVALUATORS["text-conditional"]


def evaluator_for(kind: str) -> Evaluator:
    try:
        return EVALUATORS[kind]
    except KeyError:
        raise UsageError(f"no quality metrics for a {kind!r} model; ganserve evaluate measures "
                         f"{', '.join(EVALUATORS)} models") from None


def parser(evaluator: Evaluator) -> UsageParser:
    p = UsageParser(prog="ganserve evaluate", description=evaluator.description)
    p.add_argument("model", help="checkpoint.pt (its EMA generator) or model.onnx")
    evaluator.add_options(p)
    p.add_argument("--json", help="also write the report to this JSON file")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (there are none when stderr is not a terminal)")
    return p


def _model_argument(argv: list[str]) -> str | None:
    """The MODEL among ``argv``: the first .pt or .onnx path, else the first other existing file or
    pyramid ensemble folder (one with a config.pbtxt)."""
    models = [a for a in argv if a.endswith((".pt", ".onnx"))]
    return models[0] if models else next((a for a in argv if not a.startswith("-") and (
        Path(a).is_file() or (Path(a) / "config.pbtxt").is_file())), None)


def main(argv: list[str]) -> int:
    model = _model_argument(argv)
    if model is None:
        if {"-h", "--help"} & set(argv):
            for kind, evaluator in EVALUATORS.items():
                print(f"== {kind} models ==\n{parser(evaluator).format_help()}")
            return 0
        raise UsageError("evaluate needs a model: a checkpoint .pt, an .onnx file or a pyramid ensemble's folder "
                         "(ganserve evaluate MODEL ...)")
    evaluator = evaluator_for(model_kind(model))
    args = parser(evaluator).parse_args(argv)
    with bars(wanted(args.no_progress)):  # a bar per generation, scoring and upscaling loop
        evaluator.run(args)
    return 0

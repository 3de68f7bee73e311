"""``ganserve export``: a checkpoint's EMA generator -> ONNX + Triton ``config.pbtxt`` in a model
repository, checked against PyTorch; with ``--metrics``, the model card too."""

from __future__ import annotations

import time
from pathlib import Path

from ganserve.errors import UsageError
from ganserve.training.checkpoint import read_checkpoint
from ganserve.training.export import PARITY_TOLERANCE, export_checkpoint_parts
from ganserve.training.model_card import write_model_cards
from ganserve.usage import UsageParser


def main(argv: list[str]) -> int:
    p = UsageParser(prog="ganserve export", description="Checkpoint -> ONNX + Triton config.pbtxt (+ model card), "
                    "with a parity check.")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by ganserve train")
    p.add_argument("--repository", default="model_repository", help="Triton model repository folder")
    p.add_argument("--name", help="model name in the repository (default: the family name)")
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--queue-delay-us", type=int, default=2000, help="Triton dynamic batcher queue delay")
    p.add_argument("--fixed-tile", action="store_true",
                   help="super-resolution: fix config.pbtxt's tile shape to the model's tile size (Triton "
                        "then batches any requests together; requests cannot choose another tile size)")
    p.add_argument("--metrics", help="JSON from `ganserve evaluate --json`, to write the model card")
    p.add_argument("--notes", help="markdown file appended to the model card as its Notes section")
    args = p.parse_args(argv)
    started = time.perf_counter()
    name = args.name
    if name is None:
        name = read_checkpoint(args.checkpoint)["config"]["model"]["family"]
    results = export_checkpoint_parts(args.checkpoint, repository=args.repository, name=name,
                                      version=args.version, max_batch_size=args.max_batch_size,
                                      queue_delay_us=args.queue_delay_us, fixed_tile=args.fixed_tile)
    for result in results.values():
        if result.size_bytes:
            print(f"wrote {result.onnx_path} ({result.size_bytes / 1e6:.2f} MB) and {result.config_path}; parity "
                  f"ONNX Runtime vs PyTorch: max abs diff {result.parity_max_abs_diff:.2e} "
                  f"(tolerance {PARITY_TOLERANCE:.0e})")
        else:
            print(f"wrote ensemble {result.config_path} (empty version folder {result.onnx_path})")
    print(f"exported in {time.perf_counter() - started:.1f}s")
    if args.metrics:
        if args.notes and not Path(args.notes).is_file():
            raise UsageError(f"--notes file {args.notes} does not exist")
        notes = Path(args.notes).read_text() if args.notes else None
        for card in write_model_cards(args.checkpoint, metrics_path=args.metrics, results=results, name=name,
                                      notes=notes):
            print(f"wrote {card}")
    return 0

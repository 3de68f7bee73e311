"""``ganserve`` command: dispatches each subcommand to the half of the project that owns it.

Each subcommand is a module with a ``main(argv) -> int`` (the training ones in ``training/commands/``),
registered in :data:`COMMANDS`. The training commands import PyTorch; ``ganserve.serve`` must not. So
the owning module is imported (by name) only when its subcommand runs.
"""

from __future__ import annotations

import importlib
import sys

from ganserve.errors import UsageError

# subcommand -> (module with a ``main(argv) -> int``, argv without the subcommand; one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ganserve.training.commands.train", "train a generator family (dcgan, ...) from a preset and overrides"),
    "export": ("ganserve.training.commands.export", "export a checkpoint's EMA generator to ONNX + Triton config"),
    "evaluate": ("ganserve.training.commands.evaluate",
                 "quality metrics of a checkpoint or ONNX file (FID/KID; SR: PSNR/SSIM; text-to-image)"),
    "train-classifier": ("ganserve.training.commands.train_classifier",
                         "train the MNIST classifier whose features the metrics use"),
    "train-text-encoder": ("ganserve.training.commands.train_text_encoder",
                           "pre-train the text-to-image text encoder (joint embedding)"),
    "train-attribute-classifier": ("ganserve.training.commands.train_attribute_classifier",
                                   "train the colour-MNIST digit/colour classifier (text2img metrics)"),
    "serve": ("ganserve.serve.cli", "run the HTTP + gRPC gateway over a model repository"),
    "triton-cpu": ("ganserve.dev.triton_cpu", "run a real Triton server without a GPU on a CPU copy of a repository"),
    "generate": ("ganserve.client.commands.generate", "generate images with a running gateway, as files or a grid"),
    "upscale": ("ganserve.client.commands.upscale",
                "upscale image files or folders with a running gateway (several at once)"),
}
# the extra that installs what a subcommand needs, when it is not 'train'
EXTRAS = {"serve": "serve", "generate": "client", "upscale": "client"}


def _usage() -> str:
    lines = ["usage: ganserve <command> [options]", "", "commands:"]
    lines += [f"  {name:<17} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run 'ganserve <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ganserve: error: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get(name, "train")
        print(f"ganserve {name}: error: missing dependency {exc.name!r}; "
              f"install the '{extra}' extra (pip install 'ganserve[{extra}]')", file=sys.stderr)
        return 2
    try:
        return int(module.main(rest) or 0)
    except UsageError as exc:
        print(f"ganserve {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

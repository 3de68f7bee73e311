"""``ganserve generate``: images from a running gateway, written as files (one file, a folder of files
named by seed, or one grid)."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from ganserve.client import Client, GanserveError, GeneratedImage
from ganserve.client.commands import _common
from ganserve.errors import UsageError
from ganserve.usage import UsageParser

PROG = "ganserve generate"


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds {text!r}: give whole numbers separated by commas, e.g. 1,2,3") from None
    if not seeds:
        raise UsageError("--seeds names no seed")
    return seeds


def build_parser() -> UsageParser:
    parser = _common.parser(PROG, "Generate images with a running gateway (ganserve serve) and write them "
                                  "as files.")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="image i gets seed SEED + i (default: drawn by the gateway)")
    seeds.add_argument("--seeds", type=_seeds, metavar="LIST", help="one image per seed, e.g. 1,2,3")
    parser.add_argument("--n", type=int, metavar="N", help="how many images (default 1; not with --seeds)")
    parser.add_argument("--prompt", metavar="TEXT", help="text to image: the prompt (needs a text-conditional model)")
    parser.add_argument("--prompt-b", metavar="TEXT", help="a second prompt mixed into the first's text embedding")
    parser.add_argument("--mix", type=float, metavar="W", help="weight of --prompt-b, 0 .. 1 (default 0.5)")
    parser.add_argument("--truncation", type=float, metavar="T", help=">= 0.05: latent components beyond it are redrawn")
    parser.add_argument("--model", metavar="NAME", help="model name (default: the only loaded model of the kind)")
    parser.add_argument("--version", type=int, metavar="V", help="model version (default: the latest loaded)")
    parser.add_argument("--format", choices=("png", "jpeg"),
                        help="image format (default: from -o's suffix, else png)")
    parser.add_argument("-o", "--out", type=Path, metavar="PATH",
                        help="FILE (.png / .jpg) for one image, or a folder for several, named SEED.png "
                             "(default: the current folder); with --grid, the grid's file (default grid.png)")
    parser.add_argument("--grid", action="store_true", help="write all images as one grid PNG instead")
    return parser


def batches(seed: int | None, seeds: list[int] | None, n: int | None) -> list[tuple[int | None, int]]:
    """(first seed, n) of each request: ``--seeds`` in runs of consecutive seeds, else one request."""
    if seeds is None:
        return [(seed, 1 if n is None else n)]
    if n is not None:
        raise UsageError("--n and --seeds both say how many images: give one")
    runs: list[tuple[int | None, int]] = []
    for s in seeds:
        first, count = runs[-1] if runs else (None, 0)
        if first is not None and s == first + count:
            runs[-1] = (first, count + 1)
        else:
            runs.append((s, 1))
    return runs


def grid(images: list[Image.Image]) -> Image.Image:
    """The images in rows of ``ceil(sqrt(len(images)))``, on black, each cell the largest image's size."""
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width, height = max(i.width for i in images), max(i.height for i in images)
    mode = "L" if all(i.mode == "L" for i in images) else "RGB"
    sheet = Image.new(mode, (columns * width, rows * height))
    for k, image in enumerate(images):
        sheet.paste(image.convert(mode), ((k % columns) * width, (k // columns) * height))
    return sheet


def _target(out: Path | None, *, as_grid: bool, fmt: str | None, total: int) -> tuple[Path, bool, str | None]:
    """(where to write, whether it is one file, the image format) for ``-o out``."""
    if as_grid:
        path = out / "grid.png" if out is not None and out.is_dir() else out or Path("grid.png")
        if path.suffix.lower() != ".png":
            raise UsageError(f"--grid writes one PNG: -o {str(path)!r} must end in .png")
        return path, True, fmt
    if out is not None and _common.names_a_file(out):
        if total != 1:
            raise UsageError(f"-o {str(out)!r} names one file, but {total} images were asked: give a "
                             f"folder, or --grid")
        return out, True, _common.output_format(out, fmt)
    return out or Path("."), False, fmt


def _write(images: list[GeneratedImage], target: Path, *, one_file: bool, as_grid: bool) -> None:
    """The files, each announced on stdout."""
    (target.parent if one_file else target).mkdir(parents=True, exist_ok=True)
    first = images[0]
    if as_grid:
        grid([i.image for i in images]).save(target, format="PNG")
        seeds = [i.seed for i in images]
        listed = (f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[0] + len(seeds)))
                  else ", ".join(map(str, seeds)))
        print(f"{target}  ({len(images)} images of {first.model} v{first.version}, seeds {listed})")
        return
    for image in images:
        path = image.save(target if one_file else target / f"{image.seed}{image.extension}")
        print(f"{path}  ({image.model} v{image.version}, seed {image.seed})")


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    runs = batches(args.seed, args.seeds, args.n)
    target, one_file, fmt = _target(args.out, as_grid=args.grid, fmt=args.format, total=sum(n for _, n in runs))
    images: list[GeneratedImage] = []
    try:
        with Client(**_common.client_options(args)) as client:
            for seed, n in runs:
                images += client.generate(n, seed=seed, truncation=args.truncation, prompt=args.prompt,
                                          prompt_b=args.prompt_b, mix=args.mix, model=args.model,
                                          version=args.version, format=fmt)
    except GanserveError as exc:
        _common.error(PROG, _common.describe(exc))
        return 1
    try:
        _write(images, target, one_file=one_file, as_grid=args.grid)
    except OSError as exc:
        _common.error(PROG, f"cannot write {exc.filename or target}: {exc.strerror or exc}")
        return 1
    return 0

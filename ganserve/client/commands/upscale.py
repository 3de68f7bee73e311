"""``ganserve upscale``: images (files, folders, globs) through a running gateway's super-resolution model,
several at once, into a folder; outputs that exist already are skipped."""

from __future__ import annotations

import asyncio
import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ganserve.client import AsyncClient, GanserveError, GatewayUnavailable
from ganserve.client.commands import _common
from ganserve.errors import UsageError
from ganserve.usage import UsageParser

PROG = "ganserve upscale"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}  # what a folder's images are


def build_parser() -> UsageParser:
    parser = _common.parser(PROG, "Upscale images with a running gateway's super-resolution model "
                                  "(ganserve serve).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files, folders (the images in them) or glob patterns ('photos/*.jpg')")
    parser.add_argument("-o", "--out", type=Path, metavar="PATH",
                        help="output folder (required for several inputs; outputs keep the inputs' names), "
                             "or FILE for one input (default: INPUT-upscaled.png in the current folder)")
    parser.add_argument("--format", choices=("png", "jpeg"), help="output format (default: from -o's suffix, "
                                                                  "else png)")
    parser.add_argument("--tile-size", type=int, metavar="PX", help="LR tile side in pixels (default: the model's)")
    parser.add_argument("--tile-overlap", type=int, metavar="PX", help="LR pixels neighbouring tiles share (default: the model's)")
    parser.add_argument("--model", metavar="NAME", help="model name (default: the only super-resolution model loaded)")
    parser.add_argument("--version", type=int, metavar="V", help="model version (default: the latest loaded)")
    parser.add_argument("--concurrency", type=int, metavar="N", default=4, help="images in flight at once (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="upscale again images whose output exists")
    return parser


def expand(inputs: list[str]) -> list[Path]:
    """The image files that ``inputs`` name: files as given, a folder's images (sorted, not recursive),
    a glob pattern's matches (sorted); each once, in order."""
    found: list[Path] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise UsageError(f"folder {given!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            images = [path]
        elif glob.has_magic(given):
            images = sorted(Path(p) for p in glob.glob(given) if Path(p).is_file())
            if not images:
                raise UsageError(f"no file matches {given!r}")
        else:
            raise UsageError(f"no such file or folder: {given!r}")
        found += [p for p in images if p not in found]
    return found


def plan(inputs: list[Path], out: Path | None, fmt: str | None) -> tuple[list[tuple[Path, Path]], str]:
    """(input, output) pairs and the output format: ``out/<input name>.<format>``, or ``out`` itself
    for one input when it names a file."""
    if len(inputs) == 1 and out is not None and _common.names_a_file(out):
        return [(inputs[0], out)], _common.output_format(out, fmt) or "png"
    if len(inputs) > 1 and out is None:
        raise UsageError(f"{len(inputs)} inputs: give an output folder with -o DIR")
    if out is not None and out.suffix.lower() in _common.SUFFIX_FORMATS and not out.is_dir():
        raise UsageError(f"-o {str(out)!r} names one file, but there are {len(inputs)} inputs: give a folder")
    fmt = fmt or "png"
    suffix = _common.FORMAT_SUFFIXES[fmt]
    if out is None:
        pairs = [(inputs[0], Path(f"{inputs[0].stem}-upscaled{suffix}"))]
    else:
        pairs = [(source, out / f"{source.stem}{suffix}") for source in inputs]
    seen: dict[Path, Path] = {}
    for source, target in pairs:
        if target.resolve() == source.resolve():
            raise UsageError(f"the output of {str(source)!r} would be the input itself: choose another -o")
        if target.resolve() in seen:
            raise UsageError(f"{str(seen[target.resolve()])!r} and {str(source)!r} would both be written to "
                             f"{str(target)!r}")
        seen[target.resolve()] = source
    return pairs, fmt


class Progress:
    """A progress bar redrawn in place on one line of ``stream`` (only on a terminal); messages printed
    through it go above the bar."""

    def __init__(self, total: int, *, stream: TextIO | None = None, enabled: bool | None = None,
                 width: int = 30) -> None:
        self.total, self.stream, self.width = total, stream or sys.stderr, width
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = self.failed = self.skipped = 0

    def line(self) -> str:
        finished = self.done + self.failed + self.skipped
        filled = self.width * finished // max(self.total, 1)
        return (f"[{'#' * filled}{'.' * (self.width - filled)}] {finished}/{self.total}  "
                f"upscaled {self.done}  skipped {self.skipped}  failed {self.failed}")

    def draw(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()

    def message(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
        print(text, file=self.stream)
        self.draw()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


@dataclass(frozen=True)
class Request:
    tile_size: int | None
    tile_overlap: int | None
    model: str | None
    version: int | None
    format: str


async def _upscale_all(pairs: list[tuple[Path, Path]], request: Request, *, client: AsyncClient,
                       concurrency: int, progress: Progress) -> None:
    """Each pair's input upscaled into its output, ``concurrency`` at a time; a failed input is reported
    and counted; a gateway that does not answer ends the run (:class:`GatewayUnavailable`)."""
    slots = asyncio.Semaphore(concurrency)

    async def one(source: Path, target: Path) -> None:
        async with slots:
            try:
                result = await client.upscale(source, tile_size=request.tile_size, tile_overlap=request.tile_overlap,
                                              model=request.model, version=request.version, format=request.format)
                target.parent.mkdir(parents=True, exist_ok=True)
                result.save(target)
            except GatewayUnavailable:
                raise
            except (GanserveError, OSError) as exc:
                progress.failed += 1
                reason = _common.describe(exc) if isinstance(exc, GanserveError) else (exc.strerror or str(exc))
                progress.message(f"{PROG}: error: {source}: {reason}")
                return
        progress.done += 1
        progress.draw()

    tasks = [asyncio.create_task(one(source, target)) for source, target in pairs]
    try:
        await asyncio.gather(*tasks)
    finally:  # a gateway that is gone: the other uploads stop
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    options = _common.client_options(args)
    pairs, fmt = plan(expand(args.inputs), args.out, args.format)
    todo = [(source, target) for source, target in pairs if args.overwrite or not target.exists()]
    progress = Progress(len(pairs))
    progress.skipped = len(pairs) - len(todo)
    progress.draw()
    request = Request(args.tile_size, args.tile_overlap, args.model, args.version, fmt)
    started = time.monotonic()

    async def run() -> None:
        async with AsyncClient(**options) as client:
            await _upscale_all(todo, request, client=client, concurrency=args.concurrency, progress=progress)

    try:
        asyncio.run(run())
    except GatewayUnavailable as exc:
        progress.close()
        _common.error(PROG, exc.message)
        return 1
    progress.close()
    skipped = f", {progress.skipped} skipped (output exists; --overwrite to redo them)" if progress.skipped else ""
    print(f"{PROG}: {progress.done} upscaled{skipped}, {progress.failed} failed "
          f"({time.monotonic() - started:.1f} s)", file=sys.stderr)
    return 1 if progress.failed else 0

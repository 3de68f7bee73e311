"""Super-resolution of any image size with a model run on ``T x T`` tiles, in bounded memory.

The low-resolution image is cut into ``T x T`` tiles whose neighbours overlap by at least
``overlap`` pixels (images smaller than a tile are edge-padded up to it), the tiles run as batches
(all the same shape, so the backend can also merge them with other requests' tiles), and each output
pixel is taken from the tile that owns it: overlaps are split at their middle, so every pixel comes
from a tile where it is at least ``overlap / 2`` pixels from the edge. The same scheme as the
reference ``upscale_tiled`` in ``training/metrics/super_resolution.py`` (docs/model-contract.md, "Tiling").

Memory: a :class:`Layout` is only the tiles' coordinates. :func:`cut` makes one batch of tiles at a
time from the uint8 image, and :func:`paste` quantises a batch's outputs straight into the uint8
output image (only the region each tile owns), so besides the input and output images only a batch
or two of float32 tiles exist, whatever the image size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ganserve.serve import images


@dataclass(frozen=True)
class Span:
    """One tile along one axis: it covers ``[start, end)`` and owns ``[own_lo, own_hi)``."""

    start: int
    end: int
    own_lo: int
    own_hi: int


Place = tuple[Span, Span]  # a tile: its row span and its column span


@dataclass(frozen=True)
class Layout:
    """The tiles of one image (row-major order)."""

    height: int     # of the original image
    width: int
    tile: int
    rows: tuple[Span, ...]
    cols: tuple[Span, ...]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)

    def places(self) -> Iterator[Place]:
        return ((r, c) for r in self.rows for c in self.cols)

    def batches(self, size: int) -> Iterator[list[Place]]:
        """The tiles in row-major order, ``size`` at a time (the last batch may be smaller)."""
        if size < 1:
            raise ValueError(f"batch size must be >= 1, got {size}")
        batch: list[Place] = []
        for place in self.places():
            batch.append(place)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def spans(n: int, *, tile: int, overlap: int) -> tuple[Span, ...]:
    """Tiles along an axis of length ``n`` (``n`` >= ``tile``); the last one ends exactly at ``n``."""
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap}, tile {tile}")
    if n <= tile:
        return (Span(0, n, 0, n),)
    starts = [*range(0, n - tile, tile - overlap), n - tile]
    cuts = [0, *((starts[i] + tile + starts[i + 1]) // 2 for i in range(len(starts) - 1)), n]
    return tuple(Span(a, a + tile, cuts[i], cuts[i + 1]) for i, a in enumerate(starts))


def plan(height: int, width: int, *, tile: int, overlap: int) -> Layout:
    """Where the tiles of a ``height x width`` image go."""
    return Layout(height=height, width=width, tile=tile,
                  rows=spans(max(height, tile), tile=tile, overlap=overlap),
                  cols=spans(max(width, tile), tile=tile, overlap=overlap))


def cut(image: np.ndarray, places: Sequence[Place], *, tile: int,
        input_range: tuple[float, float]) -> np.ndarray:
    """Some tiles of ``uint8 [h, w, C]`` -> ``float32 [n, C, tile, tile]`` in ``input_range``
    (:func:`ganserve.serve.images.to_model_input`); a tile past the image's edge (only when the image is
    smaller than a tile) is edge-padded."""
    h, w, channels = image.shape
    out = np.empty((len(places), channels, tile, tile), dtype=np.float32)
    for i, (r, c) in enumerate(places):
        region = image[r.start:min(r.end, h), c.start:min(c.end, w)]
        if region.shape[:2] != (tile, tile):
            region = np.pad(region, ((0, tile - region.shape[0]), (0, tile - region.shape[1]), (0, 0)),
                            mode="edge")
        out[i] = region.transpose(2, 0, 1)
    lo, hi = input_range  # as images.to_model_input, on the whole batch at once
    out *= np.float32((hi - lo) / 255.0)
    out += np.float32(lo)
    return out


def paste(outputs: np.ndarray, places: Sequence[Place], layout: Layout, out: np.ndarray, *, scale: int,
          value_range: tuple[float, float]) -> None:
    """Upscaled tiles ``[n, C, s*tile, s*tile]`` -> their owned regions of ``out`` (the output image,
    ``uint8 [s*h, s*w, >= C]``; channels past ``C`` are left alone), quantised on the way
    (:func:`ganserve.serve.images.quantize_into`)."""
    if len(outputs) != len(places):
        raise ValueError(f"expected {len(places)} tiles, got {len(outputs)}")
    channels = outputs.shape[1]
    for o, (r, c) in zip(outputs, places, strict=True):
        y0, y1 = r.own_lo, min(r.own_hi, layout.height)  # owned, less the padding
        x0, x1 = c.own_lo, min(c.own_hi, layout.width)
        images.quantize_into(
            out[y0 * scale:y1 * scale, x0 * scale:x1 * scale, :channels],
            o[:, (y0 - r.start) * scale:(y1 - r.start) * scale, (x0 - c.start) * scale:(x1 - c.start) * scale],
            value_range=value_range)

"""Super-resolution of any image size with a model that takes fixed ``T x T`` tiles.

The low-resolution image is cut into ``T x T`` tiles whose neighbours overlap by at least
``overlap`` pixels (images smaller than a tile are edge-padded up to it), the tiles run as batches
(all the same shape, so the backend can also merge them with other requests' tiles), and each output
pixel is taken from the tile that owns it: overlaps are split at their middle, so every pixel comes
from a tile where it is at least ``overlap / 2`` pixels from the edge. The same scheme as the
reference in ``training/sr_metrics.py`` (docs/model-contract.md, "Tiling"). Memory per step is
bounded by the tile and batch size, not by the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """One tile along one axis: it covers ``[start, end)`` and owns ``[own_lo, own_hi)``."""

    start: int
    end: int
    own_lo: int
    own_hi: int


@dataclass(frozen=True)
class Layout:
    """Where the tiles of one image came from (row-major order)."""

    height: int     # of the original image
    width: int
    rows: tuple[Span, ...]
    cols: tuple[Span, ...]

    @property
    def count(self) -> int:
        return len(self.rows) * len(self.cols)


def spans(n: int, *, tile: int, overlap: int) -> tuple[Span, ...]:
    """Tiles along an axis of length ``n`` (``n`` >= ``tile``); the last one ends exactly at ``n``."""
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap}, tile {tile}")
    if n <= tile:
        return (Span(0, n, 0, n),)
    starts = [*range(0, n - tile, tile - overlap), n - tile]
    cuts = [0, *((starts[i] + tile + starts[i + 1]) // 2 for i in range(len(starts) - 1)), n]
    return tuple(Span(a, a + tile, cuts[i], cuts[i + 1]) for i, a in enumerate(starts))


def cut(image: np.ndarray, *, tile: int, overlap: int) -> tuple[np.ndarray, Layout]:
    """``[C, h, w]`` -> tiles ``[N, C, tile, tile]`` and their layout."""
    _, h, w = image.shape
    padded = np.pad(image, ((0, 0), (0, max(0, tile - h)), (0, max(0, tile - w))), mode="edge")
    layout = Layout(height=h, width=w, rows=spans(max(h, tile), tile=tile, overlap=overlap),
                    cols=spans(max(w, tile), tile=tile, overlap=overlap))
    tiles = np.stack([padded[:, r.start:r.end, c.start:c.end] for r in layout.rows for c in layout.cols])
    return tiles, layout


def stitch(outputs: np.ndarray, layout: Layout, *, scale: int) -> np.ndarray:
    """Upscaled tiles ``[N, C, s*tile, s*tile]`` -> the upscaled image ``[C, s*h, s*w]``."""
    if len(outputs) != layout.count:
        raise ValueError(f"expected {layout.count} tiles, got {len(outputs)}")
    out = np.empty((outputs.shape[1], layout.height * scale, layout.width * scale), dtype=outputs.dtype)
    i = 0
    for r in layout.rows:
        for c in layout.cols:
            y0, y1 = r.own_lo, min(r.own_hi, layout.height)  # owned, less the padding
            x0, x1 = c.own_lo, min(c.own_hi, layout.width)
            out[:, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = outputs[
                i, :, (y0 - r.start) * scale:(y1 - r.start) * scale, (x0 - c.start) * scale:(x1 - c.start) * scale]
            i += 1
    return out

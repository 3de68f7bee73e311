"""Progress for long commands (``ganserve train``, ``ganserve evaluate``): tqdm bars on stderr, shown
when stderr is a terminal unless ``--no-progress``; and durations as the ``done:`` lines print them.

Code that loops over batches wraps the loop in :func:`track`; a command turns the bars on for what it
runs with :func:`bars`. Outside ``bars`` (tests, library use, a pipe) :func:`track` returns the
iterable as it is.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
_ENABLED: ContextVar[bool] = ContextVar("ganserve_progress_bars", default=False)


def wanted(no_progress: bool = False) -> bool:
    """Bars unless ``--no-progress``, and only on a terminal (no carriage-return frames in a log file)."""
    return not no_progress and sys.stderr.isatty()


@contextlib.contextmanager
def bars(enabled: bool) -> Iterator[None]:
    """:func:`track` draws bars inside this block when ``enabled``."""
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def track(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "batch") -> Iterable[T]:
    """``iterable``, with a bar named ``desc`` inside :func:`bars` (the bar goes away when done)."""
    if not _ENABLED.get():
        return iterable
    from tqdm import tqdm

    # every step drawn (mininterval 0): these loops have few, long steps, and the last one (100%) shows
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False,
                mininterval=0, miniters=1)


def duration(seconds: float) -> str:
    """``0.4 s``, ``8 s``, ``3:12``, ``1:02:03``."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    if seconds < 59.5:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def breakdown(wall: float, parts: dict[str, float], *, least: float = 0.5, keep: tuple[str, ...] = ("training",)) -> str:
    """``3:50 (training 8 s, sample grids 3:12, ..., other 2 s)``: ``wall`` and where it went, the
    parts in the order given (those under ``least`` seconds, unless named in ``keep``, folded into
    ``other``, the rest of ``wall``)."""
    shown = {name: s for name, s in parts.items() if s >= least or name in keep}
    other = wall - sum(shown.values())
    items = [f"{name} {duration(s)}" for name, s in shown.items()]
    if other >= least:
        items.append(f"other {duration(other)}")
    return f"{duration(wall)} ({', '.join(items)})" if items else duration(wall)


def process_age() -> float | None:
    """Seconds since this process started (Linux: from /proc, so imports count too), else None."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None

"""Progress of long commands: the training bar keeps its losses on an 80-column terminal, the done line
reports wall time and where it went, and ``evaluate`` draws bars on a terminal only."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from ganserve.training import progress

ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_on_terminal(argv: list[str], *, columns: int, timeout: float = 240) -> tuple[int, list[str]]:
    """``argv`` with stdout and stderr on a pseudo-terminal ``columns`` wide: (exit status, the
    frames drawn, one per carriage return or newline, escape sequences removed)."""
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=side, stderr=side, cwd=ROOT,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": str(columns)})
    os.close(side)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    status = process.wait(timeout)
    text = ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))
    return status, [f for f in re.split(r"[\r\n]", text) if f.strip()]


def test_the_training_bar_keeps_its_losses_at_80_columns_and_done_says_where_the_time_went(tmp_path: Path) -> None:
    status, frames = _run_on_terminal(
        [sys.executable, "-m", "ganserve", "train", "--preset", "dcgan-digits-tiny", "--out", str(tmp_path / "run"),
         "--steps", "20", "--set", "train.log_every=5", "--set", "train.sample_every=5"], columns=80)
    assert status == 0, "\n".join(frames[-20:])
    bars = [f for f in frames if f.startswith("dcgan ") and "/20" in f]
    assert bars, "\n".join(frames)
    assert all(len(f) <= 80 for f in bars), [f for f in bars if len(f) > 80]
    with_losses = [f for f in bars if "loss_g" in f]
    assert with_losses, bars
    assert re.match(r"dcgan loss_g -?[0-9.e+-]+ loss_d -?[0-9.e+-]+ 20/20 ", with_losses[-1]), with_losses[-1]

    done = [f for f in frames if f.startswith("done: ")]
    assert len(done) == 1, frames[-5:]
    match = re.fullmatch(r"done: 20 steps in (\S+ s|\d+:\d\d) \((.*)\); checkpoint .*checkpoint\.pt", done[0])
    assert match, done[0]
    parts = dict(re.fullmatch(r"(.+) (\S+ s|\d+:\d\d)", p).groups() for p in match.group(2).split(", "))
    assert "imports and set-up" in parts and "training" in parts, parts
    assert any(p.startswith("sample grids and curves (EMA generator with BatchNorm recalibration") for p in parts), parts

    def seconds(text: str) -> float:
        if text.endswith(" s"):
            return float(text[:-2])
        minutes, secs = text.split(":")
        return 60 * int(minutes) + int(secs)

    total = seconds(match.group(1))
    assert sum(seconds(v) for v in parts.values()) == pytest.approx(total, abs=0.1 * len(parts) + 1)
    assert 1 < total < 600


def test_without_a_terminal_there_is_no_bar(tmp_path: Path) -> None:
    from ganserve.training.callbacks import ProgressBar

    class Trainer:  # what the bar reads of the trainer
        class cfg:
            class model:
                family = "dcgan"

            class train:
                steps = 10

        class state:
            step = 0

    bar = ProgressBar()  # on when stderr is a terminal; pytest's capture is not one
    bar.on_train_start(Trainer)
    assert bar.bar is None
    forced = ProgressBar(enabled=True)
    forced.on_train_start(Trainer)
    forced.on_log(Trainer, [{"step": 5, "loss_d": 1.25, "loss_g": 0.5, "d_real": 2.0, "loss_ms": 0.125}])
    assert str(forced.bar).startswith("dcgan loss_g 0.5 loss_d 1.25 loss_ms 0.125 5/10 ")
    assert str(forced.bar).endswith(", d_real 2")
    forced.on_train_end(Trainer)


@pytest.mark.parametrize(("seconds", "text"), [(0.42, "0.4 s"), (8.0, "8.0 s"), (12.4, "12 s"), (192, "3:12"),
                                                (230.4, "3:50"), (3723, "1:02:03")])
def test_durations(seconds: float, text: str) -> None:
    assert progress.duration(seconds) == text


def test_breakdown_folds_small_parts_into_other() -> None:
    assert progress.breakdown(230, {"training": 8, "sample grids": 192, "checkpoints": 20, "log": 0.1}) == (
        "3:50 (training 8.0 s, sample grids 3:12, checkpoints 20 s, other 10 s)")
    assert progress.breakdown(5, {"training": 0.1, "log": 0.1}) == "5.0 s (training 0.1 s, other 4.9 s)"
    assert progress.breakdown(0.2, {"log": 0.1}) == "0.2 s"


def test_track_draws_a_bar_only_inside_bars(capsys: pytest.CaptureFixture[str]) -> None:
    items = list(range(5))
    assert progress.track(items, desc="x") is items  # off by default: the iterable itself
    with progress.bars(True):
        assert list(progress.track(items, desc="scoring")) == items
    assert "scoring" in capsys.readouterr().err
    with progress.bars(False):
        assert progress.track(items, desc="x") is items


def test_progress_is_wanted_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert progress.wanted() and not progress.wanted(no_progress=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not progress.wanted()


def test_evaluate_draws_bars_on_a_terminal(tmp_path: Path) -> None:
    """An 8x8 ONNX generator (built with onnx.helper), measured against scikit-learn's digits."""
    from tests.serve.helpers import add_generator

    model = add_generator(tmp_path, "digits", latent_dim=8, channels=1, size=8)
    status, frames = _run_on_terminal([sys.executable, "-m", "ganserve", "evaluate", str(model), "--samples", "1000",
                                       "--no-references"], columns=80)
    assert status == 0, "\n".join(frames)
    assert any(f.startswith(str(model)[:44]) for f in frames), frames  # the report
    bars = [f for f in frames if re.match(r"(generating|scoring) \d+ images: +\d+%\|", f)]
    assert any(f.startswith("generating 1000 images: 100%") for f in bars), bars
    assert any(f.startswith("scoring 1000 images: 100%") for f in bars), bars
    assert all(len(f) <= 80 for f in bars)

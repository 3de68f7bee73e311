"""Observability for the training loop: progress bar, JSONL log, sample grids, loss curves,
checkpoints and failure detection. Each is a :class:`ganserve.training.loop.Callback`, run on rank 0 only."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from ganserve.training.data.images import to_uint8
from ganserve.training.loop import Callback, Trainer, TrainingFailure


# ---------------------------------------------------------------- images
def image_grid(images: torch.Tensor, *, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [H', W'] or [H', W', 3] grid with ``pad`` black pixels."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = np.zeros((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), dtype=np.uint8)
    pixels = to_uint8(images.detach().cpu()).numpy()
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = pixels[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def sample_diversity(images: torch.Tensor) -> float:
    """Mean pairwise L2 distance between images: near 0 when every sample looks the same."""
    flat = images.detach().float().flatten(1)
    return float(torch.pdist(flat).mean()) if flat.shape[0] > 1 else 0.0


# ---------------------------------------------------------------- callbacks
class ProgressBar(Callback):
    """A tqdm bar on stderr (``enabled``: True, False, or None for "when stderr is a terminal").

    The losses come first, right after the family's name, and the timing last: a narrow terminal
    cuts the end of the line, never the losses (``dcgan loss_g 0.734 loss_d 0.512 120/1000 12%|██|
    00:10<01:20, 11.2step/s, d_real 1.23 d_fake -1.2``)."""

    timing = "progress bar"
    FORMAT = "{desc} {n_fmt}/{total_fmt} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}, {rate_fmt}{postfix}"

    def __init__(self, *, enabled: bool | None = None) -> None:
        self.enabled, self.bar, self.name = enabled, None, ""

    def on_train_start(self, trainer):
        if not (sys.stderr.isatty() if self.enabled is None else self.enabled):
            return
        from tqdm import tqdm

        self.name = trainer.cfg.model.family
        self.bar = tqdm(total=trainer.cfg.train.steps, initial=trainer.state.step, unit="step", desc=self.name,
                        bar_format=self.FORMAT, dynamic_ncols=True, file=sys.stderr)

    @staticmethod
    def losses_first(row: dict[str, float]) -> tuple[str, str]:
        """(``loss_g 0.734 loss_d 0.512 ...``, ``d_real 1.23 d_fake -1.2 ...``): every loss, G's and
        D's first, to 3 significant digits; then the other statistics (D's logits, the penalty)."""
        first = {"loss_g": 0, "loss_d": 1}
        losses = sorted((k for k in row if k.startswith("loss")), key=lambda k: (first.get(k, 2), k))
        others = [k for k in row if k.startswith(("d_", "gp"))]
        return (" ".join(f"{k} {row[k]:.3g}" for k in losses), " ".join(f"{k} {row[k]:.3g}" for k in others))

    def on_log(self, trainer, rows):
        if self.bar is not None:
            last = rows[-1]
            losses, others = self.losses_first(last)
            self.bar.set_description_str(f"{self.name} {losses}", refresh=False)
            self.bar.set_postfix_str(others, refresh=False)
            self.bar.update(last["step"] - self.bar.n)

    def on_train_end(self, trainer):
        if self.bar is not None:
            self.bar.close()


class JsonlLogger(Callback):
    """One JSON object per step in ``<out>/log.jsonl``, written at every log interval."""

    timing = "log.jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last = (0, 0.0)

    def on_train_start(self, trainer):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._last = (trainer.state.step, trainer.state.wall_time)

    def on_log(self, trainer, rows):
        step0, time0 = self._last
        step1, time1 = rows[-1]["step"], trainer.state.wall_time
        rate = (step1 - step0) * trainer.cfg.train.batch_size * trainer.dist.world / max(time1 - time0, 1e-9)
        self._last = (step1, time1)
        with self.path.open("a") as fh:
            for row in rows:
                fh.write(json.dumps({**row, "images_per_s": round(rate, 1),
                                     "wall_time": round(time1, 3)}) + "\n")


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss curves (raw and smoothed) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("loss_d", "loss_g", "gp") if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for k in keys:
        steps = np.array([r["step"] for r in rows if k in r])
        vals = np.array([r[k] for r in rows if k in r], dtype=float)
        win = max(1, len(vals) // 50)
        smooth = np.convolve(vals, np.ones(win) / win, mode="valid")
        (line,) = axes[0].plot(steps[win - 1:], smooth, label=k, zorder=2)
        axes[0].plot(steps, vals, lw=0.4, alpha=0.3, color=line.get_color(), zorder=1)
    for k in ("d_real", "d_fake"):
        if any(k in r for r in rows):
            axes[1].plot([r["step"] for r in rows if k in r], [r[k] for r in rows if k in r], lw=0.6, label=k)
    axes[0].set(title="losses", xlabel="step")
    axes[1].set(title="mean D logits", xlabel="step")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


class SampleGrid(Callback):
    """Every ``sample_every`` steps: a grid from a fixed z through the EMA generator, and the curves.

    Also feeds the mode-collapse detector with the grid's diversity.
    """

    timing = "sample grids and curves (EMA generator with BatchNorm recalibration)"

    def __init__(self, out_dir: Path, *, detector: FailureDetector | None = None) -> None:
        self.out_dir, self.detector = out_dir, detector
        self.fixed: torch.Tensor | None = None

    def on_train_start(self, trainer):
        gen = torch.Generator(device=trainer.device).manual_seed(2024)
        self.fixed = trainer.family.sample_inputs(trainer.cfg.train.sample_grid, gen=gen, device=trainer.device)

    def on_step_end(self, trainer):
        step = trainer.state.step
        if step % trainer.cfg.train.sample_every == 0 or step == trainer.cfg.train.steps:
            self.render(trainer)

    @torch.no_grad()
    def render(self, trainer: Trainer) -> Path:
        images = trainer.family.render_samples(trainer.exported_generator(), self.fixed)
        path = self.out_dir / "samples" / f"step_{trainer.state.step:07d}.png"
        grid = image_grid(images)
        save_png(grid, path)
        save_png(grid, self.out_dir / "samples.png")
        plot_curves(read_log(self.out_dir / "log.jsonl"), self.out_dir / "curves.png")
        if self.detector is not None:
            self.detector.check_samples(trainer, images)
        return path


class Checkpointer(Callback):
    timing = "checkpoints"

    def on_step_end(self, trainer):
        step = trainer.state.step
        if step % trainer.cfg.train.checkpoint_every == 0 or step == trainer.cfg.train.steps:
            trainer.save_checkpoint()


class FailureDetector(Callback):
    """Warns (or, with ``train.stop_on_failure``, raises :class:`TrainingFailure`) when:

    - a loss is NaN or infinite;
    - D's loss stays below ``d_collapse_loss`` for ``d_collapse_window`` consecutive steps: D separates
      real from fake perfectly and G's gradients vanish;
    - samples from a fixed z are far less diverse than real data (ratio below ``mode_collapse_ratio``).
    """

    timing = "failure checks"

    def __init__(self) -> None:
        self.low_d_run = 0
        self.real_diversity: float | None = None
        self.events: list[tuple[str, int, str]] = []

    def _fire(self, trainer: Trainer, kind: str, message: str) -> None:
        self.events.append((kind, trainer.state.step, message))
        if trainer.cfg.train.stop_on_failure:
            trainer.save_checkpoint(trainer.out_dir / f"failure_{kind}.pt")
            raise TrainingFailure(f"{kind} at step {trainer.state.step}: {message}")
        warnings.warn(f"[{kind}] step {trainer.state.step}: {message}", RuntimeWarning, stacklevel=2)

    def on_train_start(self, trainer):
        if not trainer.family.checks_mode_collapse:
            return
        n = min(len(trainer.data), trainer.cfg.train.sample_grid)
        idx = torch.randperm(len(trainer.data), generator=torch.Generator().manual_seed(7))[:n]
        self.real_diversity = sample_diversity(trainer.family.batch(trainer.data, idx, torch.device("cpu"))["images"])

    def on_log(self, trainer, rows):
        t = trainer.cfg.train
        for row in rows:
            bad = [k for k, v in row.items() if isinstance(v, float) and k.startswith("loss") and not math.isfinite(v)]
            if bad:
                self._fire(trainer, "nan", f"non-finite {', '.join(bad)} at step {row['step']}")
                return
            if "loss_d" in row and t.loss != "wgan-gp":
                self.low_d_run = self.low_d_run + 1 if row["loss_d"] < t.d_collapse_loss else 0
                if self.low_d_run == t.d_collapse_window:
                    self._fire(trainer, "d_collapse",
                               f"D loss below {t.d_collapse_loss} for {t.d_collapse_window} steps: D wins "
                               "outright and G gets no signal (try label smoothing, instance noise, "
                               "spectral norm or a lower lr_d)")

    def check_samples(self, trainer: Trainer, images: torch.Tensor) -> None:
        if not self.real_diversity or trainer.state.step < trainer.cfg.train.mode_collapse_after:
            return
        ratio = sample_diversity(images) / self.real_diversity
        if ratio < trainer.cfg.train.mode_collapse_ratio:
            self._fire(trainer, "mode_collapse",
                       f"sample diversity is {ratio:.3f} of real data's (threshold "
                       f"{trainer.cfg.train.mode_collapse_ratio}): the generator produces near-identical images")


def default_callbacks(out_dir: Path, *, progress: bool | None = None) -> list[Callback]:
    """``progress``: the bar on (True), off (False), or on when stderr is a terminal (None)."""
    detector = FailureDetector()
    return [JsonlLogger(out_dir / "log.jsonl"), ProgressBar(enabled=progress), detector,
            SampleGrid(out_dir, detector=detector), Checkpointer()]

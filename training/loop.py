"""The one training loop for every family.

Per generator step: ``d_steps`` discriminator updates, then one generator update, then the EMA.
Everything family-specific is behind :class:`ganserve.training.families.base.Family`; everything observational
(progress, logs, samples, curves, checkpoints, failure detection) is a callback.

Runs on CPU, one GPU, or many processes under ``torchrun`` (DistributedDataParallel; rank 0 alone
logs, samples and checkpoints). Reproducible: all randomness comes from seeded generators whose
state is checkpointed with the data position, so a resumed run continues exactly.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ganserve.errors import UsageError
from ganserve.training.checkpoint import (
    CHECKPOINT_VERSION,
    checkpoint_config,
    initial_generator_weights,
    read_checkpoint,
)
from ganserve.training.config import RunConfig
from ganserve.training.data.images import ImageSet
from ganserve.training.data.sampler import BatchSampler
from ganserve.training.ema import EMA
from ganserve.training.families import Family, get_family, validate
from ganserve.training.losses import build_loss, gradient_penalty


class TrainingFailure(RuntimeError):
    """Raised by a failure detector when ``train.stop_on_failure`` is set."""


class Callback:
    """Hooks called on rank 0. ``stats`` holds floats for the steps since the previous call.

    The time spent in a callback's hooks is summed in :attr:`Trainer.timings` under its ``timing``
    (what ``ganserve train``'s ``done:`` line names it)."""

    timing = "callbacks"

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_log(self, trainer: Trainer, rows: list[dict[str, float]]) -> None: ...
    def on_step_end(self, trainer: Trainer) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_description() -> str:
    gpu = ""
    if torch.cuda.is_available():
        gpu = f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores{gpu}, torch {torch.__version__}"


@dataclass
class TrainState:
    step: int = 0                 # generator steps done
    wall_time: float = 0.0        # seconds spent training, summed over resumes
    meta: dict[str, Any] = field(default_factory=dict)


class Trainer:
    def __init__(self, cfg: RunConfig, *, out_dir: str | Path, callbacks: list[Callback] | None = None,
                 data: ImageSet | None = None, meta: dict[str, Any] | None = None) -> None:
        self.cfg = validate(cfg)
        self.out_dir = Path(out_dir)
        self.dist = Distributed.from_env()
        self.callbacks = callbacks or []
        t = cfg.train
        self.device = self._pick_device(t.device)
        if self.dist.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        torch.manual_seed(t.seed)
        self.family: Family = get_family(cfg)
        self.data = data if data is not None else self.family.load_data()
        self.family.data = self.data
        self.sampler = BatchSampler(len(self.data), batch_size=t.batch_size, seed=t.seed,
                                    rank=self.dist.rank, world=self.dist.world)
        self.G = self.family.build_generator().to(self.device)
        self.D = self.family.build_discriminator()
        self.D = self.D.to(self.device) if self.D is not None else None
        if t.init_from:  # e.g. SRGAN from a trained SRResNet; a resumed run then loads its own state
            self.G.load_state_dict(initial_generator_weights(t.init_from, self.G))
        self.ema = EMA(self.G, decay=t.ema_decay, start=t.ema_start)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=(t.beta1, t.beta2))
        self.opt_d = (torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=(t.beta1, t.beta2))
                      if self.D is not None else None)
        self.adv = build_loss(t.loss, label_smoothing=t.label_smoothing)
        # one generator per process for every random draw of the loop (z, noise, penalty points)
        self.gen = torch.Generator(device=self.device).manual_seed(t.seed * 7919 + self.dist.rank)
        self.state = TrainState(meta=dict(meta or {}))
        # seconds this process spent, by what: "training" (the steps), then each callback's timing
        self.timings: dict[str, float] = {"training": 0.0}
        self.state.meta.setdefault("machine", machine_description())
        self.state.meta.setdefault("commit", git_commit())
        self.state.meta.setdefault("data", self.data.description)
        self.state.meta.setdefault("world_size", self.dist.world)
        self.G_train: nn.Module = DDP(self.G) if self.dist.world > 1 else self.G
        self.D_train = DDP(self.D) if (self.dist.world > 1 and self.D is not None) else self.D

    def _pick_device(self, name: str) -> torch.device:
        if name.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UsageError(f"train.device={name!r} but no CUDA device is available; use cpu")
            if self.dist.world > 1:
                return torch.device("cuda", self.dist.local_rank)
        elif name != "cpu":
            raise UsageError(f"unknown device {name!r}; valid: cpu, cuda, cuda:N")
        return torch.device(name)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def checkpoint(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "step": self.state.step,
            "wall_time": self.state.wall_time,
            "meta": self.state.meta,
            "config": self.cfg.to_dict(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict() if self.D is not None else None,
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "rng": {"loop": self.gen.get_state(), "torch": torch.get_rng_state()},
            "sampler": self.sampler.state_dict(),
        }

    def save_checkpoint(self, path: Path | None = None) -> Path:
        if not self.dist.is_main:
            return self.checkpoint_path
        path = path or self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.checkpoint(), tmp)
        os.replace(tmp, path)  # atomic: a crash mid-save never leaves a broken checkpoint
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        ckpt = read_checkpoint(path)
        if checkpoint_config(ckpt).model != self.cfg.model:  # older configs lack new fields
            raise UsageError(f"checkpoint {path} was made with a different model config; "
                             "resume with the same preset/overrides")
        self.G.load_state_dict(ckpt["G"])
        if self.D is not None:
            self.D.load_state_dict(ckpt["D"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
        self.ema.load_state_dict(ckpt["ema"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        if self.dist.world == 1:  # per-rank generator states are not saved; ranks re-seed
            self.gen.set_state(ckpt["rng"]["loop"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.sampler.load_state_dict(ckpt["sampler"])
        self.state.step, self.state.wall_time = int(ckpt["step"]), float(ckpt["wall_time"])
        # keep the run's original command (what reproduces it); note how it was resumed
        meta = dict(ckpt.get("meta", {}))
        if "argv" in self.state.meta and self.state.meta["argv"] != meta.get("argv"):
            meta["resumed_with"] = [*meta.get("resumed_with", []), self.state.meta["argv"]]
        self.state.meta = meta

    # ------------------------------------------------------------------ the step
    def noise_std(self) -> float:
        t = self.cfg.train
        if t.instance_noise <= 0 or t.instance_noise_steps <= 0:
            return t.instance_noise
        return t.instance_noise * max(0.0, 1.0 - self.state.step / t.instance_noise_steps)

    def critic(self):
        """D with annealed instance noise (Sønderby et al. 2016) on its image input."""
        sigma = self.noise_std()
        if sigma <= 0:
            return self.D_train

        def noisy(x: torch.Tensor, *cond: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(x.shape, generator=self.gen, device=x.device, dtype=x.dtype)
            return self.D_train(x + sigma * noise, *cond)

        return noisy

    def train_step(self) -> dict[str, torch.Tensor]:
        t, fam = self.cfg.train, self.family
        stats: dict[str, torch.Tensor] = {}
        critic = self.critic() if self.D is not None else None
        batch = None
        carry: dict[str, Any] = {}
        # (1) update D: maximise log D(x) + log(1 - D(G(z))) (or the selected loss's equivalent)
        for i in range(t.d_steps if self.D is not None else 0):
            batch = fam.batch(self.data, self.sampler.next_indices(), self.device)
            out = fam.d_step(G=self.G_train, critic=critic, batch=batch, gen=self.gen,
                             keep_graph=i == t.d_steps - 1)
            loss_d = self.adv.d_loss(out.real_logits, out.fake_logits)
            if self.adv.needs_gradient_penalty:
                gp = gradient_penalty(out.gp_critic, out.real_images, out.fake_images, generator=self.gen)
                loss_d = loss_d + t.gp_weight * gp
                stats["gp"] = gp.detach()
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            carry = out.carry
            stats["loss_d"] = loss_d.detach()
            stats["d_real"] = out.real_logits.detach().mean()
            stats["d_fake"] = out.fake_logits.detach().mean()
        if batch is None:  # families without a discriminator (e.g. SRResNet pre-training)
            batch = fam.batch(self.data, self.sampler.next_indices(), self.device)
        # (2) update G
        loss_g, g_stats = fam.g_loss(G=self.G_train, critic=critic, batch=batch, adv=self.adv,
                                     gen=self.gen, carry=carry)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.state.step += 1
        self.ema.update(self.G, step=self.state.step)
        stats["loss_g"] = loss_g.detach()
        stats.update(g_stats)
        return stats

    # ------------------------------------------------------------------ the loop
    def _call(self, hook: str, *args: Any) -> None:
        if self.dist.is_main:
            for cb in self.callbacks:
                started = time.perf_counter()
                getattr(cb, hook)(self, *args)
                self.timings[cb.timing] = self.timings.get(cb.timing, 0.0) + time.perf_counter() - started

    def fit(self, *, until: int | None = None) -> TrainState:
        """Train to ``train.steps`` (or to step ``until``, if smaller: benchmarks run in blocks)."""
        t = self.cfg.train
        last = t.steps if until is None else min(until, t.steps)
        self.G_train.train()
        if self.D_train is not None:
            self.D_train.train()
        self._call("on_train_start")
        pending: list[dict[str, torch.Tensor]] = []
        started = time.perf_counter()
        base_wall = self.state.wall_time
        try:
            while self.state.step < last:
                step_started = time.perf_counter()
                step_stats = self.train_step()
                self.timings["training"] += time.perf_counter() - step_started
                step_stats["step"] = torch.tensor(float(self.state.step))
                pending.append(step_stats)
                self.state.wall_time = base_wall + time.perf_counter() - started
                if self.state.step % t.log_every == 0 or self.state.step == last:
                    self._flush(pending)
                    pending = []
                self._call("on_step_end")
        except KeyboardInterrupt:
            self._flush(pending)
            self.save_checkpoint()
            if self.dist.is_main:
                print(f"\ninterrupted at step {self.state.step}; resumable checkpoint: {self.checkpoint_path}")
            raise
        self._flush(pending)
        self._call("on_train_end")
        return self.state

    def close(self, *, clean: bool = True) -> None:
        """Leave the process group. Ranks meet first when ``clean``: a rank that exits while the
        others still talk to it makes gloo abort ("terminate called without an active exception")."""
        if self.dist.world > 1 and dist.is_initialized():
            if clean:
                dist.barrier()
            dist.destroy_process_group()

    def _flush(self, pending: list[dict[str, torch.Tensor]]) -> None:
        if not pending:
            return
        keys = sorted({k for s in pending for k in s})
        # one device->host transfer for all the steps since the last flush
        values = torch.stack([torch.stack([s.get(k, torch.tensor(float("nan"))).float().cpu()
                                           for k in keys]) for s in pending]).tolist()
        rows = [{k: v for k, v in zip(keys, row)} for row in values]
        for row in rows:
            row["step"] = int(row["step"])
        self._call("on_log", rows)

    # ------------------------------------------------------------------ the model to ship
    def exported_generator(self) -> nn.Module:
        """The EMA generator with standing BatchNorm statistics, in eval mode."""
        return self.family.standing_generator(self.ema, device=self.device)

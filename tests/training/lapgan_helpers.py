"""A tiny LAPGAN trained and exported for the tests that need one (tests/training, tests/serve)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ganserve.training.export import export_checkpoint_parts
from ganserve.training.loop import Trainer
from ganserve.training.presets import preset

torch.set_num_threads(1)  # as tests/training/conftest.py: small models, and the machine's cores are shared


def train_tiny_lapgan(tmp: Path, *, steps: int = 30, name: str = "lapgan") -> tuple[Path, Path]:
    """(checkpoint, repository): the ``lapgan-tiny`` preset (2 -> 4 -> 8 on scikit-learn's digits)
    trained ``steps`` steps through the training loop (a couple of seconds), exported as ``name``."""
    cfg = preset("lapgan-tiny")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps))
    trainer = Trainer(cfg, out_dir=tmp / "run")
    trainer.fit()
    checkpoint = trainer.save_checkpoint()
    repo = tmp / "repository"
    export_checkpoint_parts(checkpoint, repository=repo, name=name, max_batch_size=8)
    return checkpoint, repo

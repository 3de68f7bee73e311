"""Fixtures of the training tests (helpers are in ``tests.training.helpers``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ganserve.training.callbacks import default_callbacks
from ganserve.training.data.captions import load_colour_mnist
from ganserve.training.export import export_checkpoint
from ganserve.training.families import apply_overrides, get_family
from ganserve.training.families.gan_int_cls import pretrain, save_encoder
from ganserve.training.loop import Trainer
from ganserve.training.presets import preset
from tests.training.helpers import MNIST, sr_config, tiny_config, write_photos

torch.set_num_threads(1)  # tests are small; one thread each keeps the 2-core CI machine responsive


@pytest.fixture
def mnist_dir() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"full MNIST not found at {MNIST} (../shared is absent)")
    return MNIST


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    yield
    os.environ.pop("MASTER_PORT", None)


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Three small RGB photos: a super-resolution image folder."""
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def digits_set():
    """Captioned colour digits (scikit-learn's 8x8 digits, coloured): 400 images, 2 captions each."""
    return load_colour_mnist(None, source="digits", image_size=8, captions_per_image=2, limit=400)


@pytest.fixture(scope="session")
def sr_stage1(photo_dir, tmp_path_factory):
    """A 4-step SRResNet run on ``photo_dir``: (trainer, checkpoint path)."""
    out = tmp_path_factory.mktemp("stage1")
    trainer = Trainer(sr_config(photo_dir, "train.steps=4"), out_dir=out)
    trainer.fit()
    trainer.save_checkpoint()
    return trainer, out / "checkpoint.pt"


@pytest.fixture(scope="session")
def sr_exported(sr_stage1, tmp_path_factory):
    """``sr_stage1``'s checkpoint exported as ``srresnet``: (checkpoint path, ExportResult)."""
    _, ckpt = sr_stage1
    repo = tmp_path_factory.mktemp("repo")
    return ckpt, export_checkpoint(ckpt, repository=repo, name="srresnet", max_batch_size=8)


@pytest.fixture(scope="session")
def dcgan_tiny(tmp_path_factory):
    """A 5-step ``dcgan-digits-tiny`` run: its folder (``run/checkpoint.pt``)."""
    tmp = tmp_path_factory.mktemp("dcgan-tiny")
    trainer = Trainer(tiny_config("train.steps=5"), out_dir=tmp / "run")
    trainer.fit()
    trainer.save_checkpoint()
    return tmp


@pytest.fixture(scope="session")
def t2i_run(tmp_path_factory, digits_set):
    """A pre-trained (2 steps) tiny encoder and a 4-step GAN-INT-CLS run on colour digits: (folder, trainer)."""
    tmp = tmp_path_factory.mktemp("t2i")
    cfg = preset("text2img-tiny")
    family = get_family(cfg)
    enc = pretrain(digits_set, family.encoder_config(), steps=2, batch_size=16, log=lambda *_: None)
    save_encoder(enc, tmp / "enc.pt")
    cfg = apply_overrides(cfg, [f"train.text_encoder={tmp / 'enc.pt'}", "train.steps=4", "data.limit=400"])
    trainer = Trainer(cfg, out_dir=tmp / "run", callbacks=default_callbacks(tmp / "run", progress=False))
    trainer.fit()
    trainer.save_checkpoint()
    return tmp, trainer

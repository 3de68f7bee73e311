"""Each failure detector fires on a constructed failure, and stays quiet on a healthy run."""

import warnings

import pytest
import torch

from ganserve.training.callbacks import FailureDetector, SampleGrid, default_callbacks
from ganserve.training.loop import Trainer, TrainingFailure
from tests.training.helpers import tiny_config


def test_nan_in_generator_weights_is_detected_and_stops(tmp_path):
    cfg = tiny_config("train.steps=5", "train.stop_on_failure=true")
    trainer = Trainer(cfg, out_dir=tmp_path, callbacks=[FailureDetector()])
    with torch.no_grad():
        next(trainer.G.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingFailure, match="nan at step 1: non-finite loss"):
        trainer.fit()
    assert (tmp_path / "failure_nan.pt").is_file()


def test_nan_only_warns_by_default(tmp_path):
    detector = FailureDetector()
    trainer = Trainer(tiny_config("train.steps=2"), out_dir=tmp_path, callbacks=[detector])
    with torch.no_grad():
        next(trainer.D.parameters()).fill_(float("inf"))
    with pytest.warns(RuntimeWarning, match=r"\[nan\]"):
        trainer.fit()
    assert detector.events and detector.events[0][0] == "nan"


def test_discriminator_collapse_is_detected(tmp_path):
    # the losses a discriminator that wins outright produces, fed to the detector directly
    cfg = tiny_config("train.d_collapse_window=5", "train.d_collapse_loss=0.02")
    trainer = Trainer(cfg, out_dir=tmp_path)
    detector = FailureDetector()
    healthy = [{"step": i, "loss_d": 1.2, "loss_g": 0.8} for i in range(1, 20)]
    detector.on_log(trainer, healthy)
    assert detector.events == []
    collapsed = [{"step": 20 + i, "loss_d": 1e-3, "loss_g": 9.0} for i in range(5)]
    with pytest.warns(RuntimeWarning, match=r"\[d_collapse\]"):
        detector.on_log(trainer, collapsed)
    assert [e[0] for e in detector.events] == ["d_collapse"]


def test_d_collapse_in_a_real_run_with_an_overpowered_discriminator(tmp_path):
    # Real training: G's learning rate is tiny and D takes many steps at a high rate, so D's
    # loss goes to ~0 and stays there.
    cfg = tiny_config("train.steps=60", "train.lr_g=1e-7", "train.lr_d=0.05", "train.d_steps=3",
                      "train.d_collapse_window=10", "train.d_collapse_loss=0.05", "train.stop_on_failure=true")
    trainer = Trainer(cfg, out_dir=tmp_path, callbacks=[FailureDetector()])
    with pytest.raises(TrainingFailure, match="d_collapse"):
        trainer.fit()


def test_mode_collapse_is_detected_on_samples(tmp_path):
    cfg = tiny_config("train.steps=4", "train.sample_every=2", "train.mode_collapse_after=0",
                      "train.stop_on_failure=true")
    detector = FailureDetector()
    trainer = Trainer(cfg, out_dir=tmp_path, callbacks=[detector, SampleGrid(tmp_path, detector=detector)])
    # a generator whose output ignores z: last layer weights at zero -> every image is tanh(0)
    last = [m for m in trainer.G.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
    last.weight.requires_grad_(False)
    with pytest.raises(TrainingFailure, match="mode_collapse"):
        trainer.fit()


def test_healthy_tiny_run_raises_nothing(tmp_path):
    cfg = tiny_config("train.steps=10")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        Trainer(cfg, out_dir=tmp_path, callbacks=default_callbacks(tmp_path, progress=False)).fit()

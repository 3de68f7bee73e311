"""ganserve.training.checkpoint: the one way to read a checkpoint, rebuild its generator and tell its kind."""

import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.checkpoint import load_generator, model_kind, read_checkpoint
from ganserve.training.export import export_checkpoint
from ganserve.training.loop import Trainer
from tests.training.helpers import tiny_config


def test_missing_or_foreign_checkpoint(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_generator(tmp_path / "nope.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UsageError, match="not a ganserve checkpoint"):
        load_generator(tmp_path / "other.pt")


def test_model_kind_of_a_checkpoint_and_of_its_onnx_export(tmp_path):
    trainer = Trainer(tiny_config("train.steps=1"), out_dir=tmp_path / "run")
    trainer.fit()
    ckpt = trainer.save_checkpoint()
    assert read_checkpoint(ckpt)["step"] == 1
    assert model_kind(ckpt) == "unconditional"
    result = export_checkpoint(ckpt, repository=tmp_path / "repo", name="tiny")
    assert model_kind(result.onnx_path) == "unconditional"
    with pytest.raises(UsageError, match="nope.onnx does not exist"):
        model_kind(tmp_path / "nope.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(UsageError, match="cannot read ONNX model"):
        model_kind(tmp_path / "bad.onnx")


def test_the_loaded_generator_is_the_trainers_exported_one(tmp_path):
    trainer = Trainer(tiny_config("train.steps=3"), out_dir=tmp_path)
    trainer.fit()
    ckpt = trainer.save_checkpoint()
    z = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.equal(load_generator(ckpt).model(z), trainer.exported_generator()(z))

import json

import pytest
import torch

from ganserve.training.callbacks import default_callbacks
from ganserve.training.checkpoint import read_checkpoint
from ganserve.training.loop import Callback, Trainer
from tests.training.helpers import tiny_config


def params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize("loss,extra", [
    ("bce", []), ("hinge", []), ("lsgan", ["train.label_smoothing=0.1"]),
    ("wgan-gp", ["model.d_norm=layer"]),
])
def test_step_keeps_losses_finite_and_changes_parameters(tmp_path, loss, extra):
    trainer = Trainer(tiny_config(f"train.loss={loss}", "train.steps=2", *extra), out_dir=tmp_path)
    g0, d0 = params(trainer.G), params(trainer.D)
    stats = trainer.train_step()
    assert all(torch.isfinite(v) for v in stats.values())
    if loss == "wgan-gp":
        assert "gp" in stats
    assert all(not torch.equal(a, b) for a, b in zip(g0, params(trainer.G)))
    assert all(not torch.equal(a, b) for a, b in zip(d0, params(trainer.D)))
    # the EMA tracks G but is not G
    assert not torch.equal(next(trainer.ema.model.parameters()), next(trainer.G.parameters()))


@pytest.mark.parametrize("options", [
    [],
    ["train.d_steps=2", "train.instance_noise=0.1", "train.instance_noise_steps=10", "model.spectral_norm=true",
     "train.lr_d=4e-4", "train.lr_g=1e-4"],
])
def test_save_then_resume_reproduces_the_next_steps_exactly(tmp_path, options):
    cfg = tiny_config("train.steps=6", *options)
    straight = Trainer(cfg, out_dir=tmp_path / "a")
    for _ in range(3):
        straight.train_step()
    straight.save_checkpoint()
    for _ in range(3):
        straight.train_step()

    resumed = Trainer(cfg, out_dir=tmp_path / "b")
    resumed.load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert resumed.state.step == 3
    for _ in range(3):
        resumed.train_step()
    for a, b in zip(straight.checkpoint()["G"].values(), resumed.checkpoint()["G"].values()):
        assert torch.equal(a, b)
    for a, b in zip(params(straight.D), params(resumed.D)):
        assert torch.equal(a, b)
    for a, b in zip(params(straight.ema.model), params(resumed.ema.model)):
        assert torch.equal(a, b)


def test_same_seed_same_run(tmp_path):
    a = Trainer(tiny_config("train.steps=3"), out_dir=tmp_path / "a")
    b = Trainer(tiny_config("train.steps=3"), out_dir=tmp_path / "b")
    a.fit(), b.fit()
    assert all(torch.equal(x, y) for x, y in zip(params(a.G), params(b.G)))
    c = Trainer(tiny_config("train.steps=3", "train.seed=1"), out_dir=tmp_path / "c")
    c.fit()
    assert not all(torch.equal(x, y) for x, y in zip(params(a.G), params(c.G)))


def test_instance_noise_anneals_linearly(tmp_path):
    trainer = Trainer(tiny_config("train.instance_noise=0.2", "train.instance_noise_steps=10"), out_dir=tmp_path)
    assert trainer.noise_std() == pytest.approx(0.2)
    trainer.state.step = 5
    assert trainer.noise_std() == pytest.approx(0.1)
    trainer.state.step = 20
    assert trainer.noise_std() == 0.0


def test_d_steps_consume_one_batch_each(tmp_path):
    trainer = Trainer(tiny_config("train.d_steps=3", "train.batch_size=32"), out_dir=tmp_path)
    trainer.train_step()
    assert trainer.sampler.position == 3 * 32


class _InterruptAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, trainer):
        if trainer.state.step == self.step:
            raise KeyboardInterrupt


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path):
    cfg = tiny_config("train.steps=8")
    trainer = Trainer(cfg, out_dir=tmp_path, callbacks=[_InterruptAt(5)])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    ckpt = read_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 5
    resumed = Trainer(cfg, out_dir=tmp_path)
    resumed.load_checkpoint(tmp_path / "checkpoint.pt")
    resumed.fit()
    reference = Trainer(cfg, out_dir=tmp_path / "ref")
    reference.fit()
    assert resumed.state.step == 8
    assert all(torch.equal(a, b) for a, b in zip(params(resumed.G), params(reference.G)))


def test_observability_outputs(tmp_path):
    cfg = tiny_config("train.steps=10", "train.sample_every=5", "train.checkpoint_every=5", "train.sample_grid=16")
    Trainer(cfg, out_dir=tmp_path, callbacks=default_callbacks(tmp_path, progress=False)).fit()
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert {"loss_d", "loss_g", "d_real", "d_fake", "images_per_s"} <= set(rows[0])
    from PIL import Image

    for png in ("samples.png", "samples/step_0000005.png", "samples/step_0000010.png", "curves.png"):
        with Image.open(tmp_path / png) as im:
            im.verify()
    grid = Image.open(tmp_path / "samples.png")
    assert grid.size == (4 * 10 + 2, 4 * 10 + 2)  # 16 samples of 8x8 with 2 px padding
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 10


def test_exported_generator_is_batch_independent(tmp_path):
    trainer = Trainer(tiny_config("train.steps=5"), out_dir=tmp_path)
    trainer.fit()
    G = trainer.exported_generator()
    z = torch.randn(6, 16)
    with torch.no_grad():
        together = G(z)
        alone = torch.cat([G(z[i: i + 1]) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-6)

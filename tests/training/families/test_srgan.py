"""ganserve.training.families.srgan: the super-resolution config checks, and the two stages (SRResNet, then
SRGAN from its weights) through the one loop."""

import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.checkpoint import model_kind, read_checkpoint
from ganserve.training.families import apply_overrides, validate
from ganserve.training.loop import Trainer
from ganserve.training.losses import VGG19_LAYERS, VGG19Features, load_vgg19
from ganserve.training.presets import preset
from tests.training.helpers import params, sr_config


@pytest.mark.parametrize("overrides,message", [
    (["data.name=mnist"], "cannot train on data.name=mnist"),
    (["model.scale=3"], "model.scale must be 2, 4 or 8"),
    (["model.image_size=15"], "multiple of model.scale"),
    (["model.family=srgan", "train.content_loss=vgg"], "needs train.vgg_weights"),
    (["train.content_loss=feature-matching"], "only for model.family=srgan"),
    (["train.pixel_loss=huber"], "valid: mse, l1"),
])
def test_sr_config_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        validate(apply_overrides(preset("srresnet-tiny"), overrides))


def test_stage1_pixel_loss_has_no_discriminator(sr_stage1):
    trainer, _ = sr_stage1
    assert trainer.D is None and trainer.opt_d is None
    stats = trainer.train_step()
    assert set(stats) == {"loss_g", "loss_pixel"} and torch.isfinite(stats["loss_g"])
    assert model_kind(sr_stage1[1]) == "super-resolution"


@pytest.mark.parametrize("content", ["feature-matching", "pixel"])
def test_stage2_adversarial_starts_from_stage1(sr_stage1, photo_dir, tmp_path, content):
    _, ckpt = sr_stage1
    cfg = sr_config(photo_dir, "model.family=srgan", f"train.content_loss={content}", f"train.init_from={ckpt}",
                    "train.steps=2")
    trainer = Trainer(cfg, out_dir=tmp_path)
    init = read_checkpoint(ckpt)["ema"]
    assert all(torch.equal(trainer.G.state_dict()[k], v) for k, v in init.items())
    g0, d0 = params(trainer.G), params(trainer.D)
    stats = trainer.train_step()
    assert all(torch.isfinite(v) for v in stats.values())
    assert {"loss_d", "loss_adv", "d_real", "d_fake"} <= set(stats)
    assert ("loss_fm" in stats) == (content == "feature-matching")
    assert any(not torch.equal(a, b) for a, b in zip(g0, params(trainer.G)))
    assert any(not torch.equal(a, b) for a, b in zip(d0, params(trainer.D)))


def test_init_from_a_different_architecture_is_a_usage_error(sr_stage1, photo_dir, tmp_path):
    _, ckpt = sr_stage1
    cfg = sr_config(photo_dir, "model.family=srgan", "model.g_width=8", f"train.init_from={ckpt}")
    with pytest.raises(UsageError, match="does not match"):
        Trainer(cfg, out_dir=tmp_path)


def test_sr_resume_reproduces_the_next_steps(photo_dir, tmp_path):
    cfg = sr_config(photo_dir, "model.family=srgan", "train.content_loss=feature-matching", "train.steps=4")
    straight = Trainer(cfg, out_dir=tmp_path / "a")
    straight.train_step()
    straight.save_checkpoint()
    straight.train_step()
    resumed = Trainer(cfg, out_dir=tmp_path / "b")
    resumed.load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    resumed.train_step()
    for a, b in zip(params(straight.G), params(resumed.G)):
        assert torch.equal(a, b)


def test_vgg19_content_loss_from_a_torchvision_layout_state_dict(photo_dir, tmp_path, sr_stage1):
    full = VGG19Features(layer="relu5_4")
    state = {k: v.clone() for k, v in full.state_dict().items()}
    assert "features.34.weight" in state and "features.0.bias" in state  # torchvision's keys
    state["classifier.0.weight"] = torch.zeros(4, 4)  # the classifier is ignored
    torch.save(state, tmp_path / "vgg19.pth")
    net = load_vgg19(tmp_path / "vgg19.pth", layer="relu2_2")
    assert len(net.features) == VGG19_LAYERS["relu2_2"] + 1
    assert not any(p.requires_grad for p in net.parameters())
    assert torch.equal(net.features[0].weight, full.features[0].weight)
    cfg = sr_config(photo_dir, "model.family=srgan", "train.content_loss=vgg", "train.vgg_layer=relu2_2",
                    f"train.vgg_weights={tmp_path / 'vgg19.pth'}", f"train.init_from={sr_stage1[1]}")
    stats = Trainer(cfg, out_dir=tmp_path / "run").train_step()
    assert "loss_vgg" in stats and torch.isfinite(stats["loss_vgg"])
    del state["features.2.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(UsageError, match="missing features.2.weight"):
        load_vgg19(tmp_path / "broken.pth")


def test_stage2_starts_from_an_exported_srresnet(sr_exported, photo_dir, tmp_path):
    """train.init_from=model.onnx: the generator is rebuilt from the ONNX initializers (BatchNorm folded into
    the convolutions by the export) and computes what the ONNX model computes."""
    import numpy as np
    import onnxruntime as ort

    from ganserve.training.onnx_weights import generator_from_onnx

    _, result = sr_exported
    family, G = generator_from_onnx(result.onnx_path)
    x = torch.rand(2, 3, 17, 23, generator=torch.Generator().manual_seed(3))
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    expected = session.run(["sr"], {"lr": x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(G(x).numpy() - expected).max() <= 1e-5
        # in train mode (batch statistics) it stays close: the BatchNorms undo what they measured
        lr = family.sample_inputs(16, gen=torch.Generator().manual_seed(0), device=torch.device("cpu"))
        eval_out = G(lr)
        assert (G.train()(lr).clamp(0, 1) - eval_out).abs().mean() < 0.02
    cfg = sr_config(photo_dir, "model.family=srgan", "train.content_loss=feature-matching",
                    f"train.init_from={result.onnx_path}", "train.steps=2")
    trainer = Trainer(cfg, out_dir=tmp_path)
    with torch.no_grad():
        assert np.abs(trainer.G.eval()(x).numpy() - expected).max() <= 1e-5
    trainer.G.train()
    stats = trainer.train_step()
    assert all(torch.isfinite(v) for v in stats.values())


def test_init_from_an_onnx_model_that_does_not_fit_is_a_usage_error(sr_exported, photo_dir, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    _, result = sr_exported
    cfg = sr_config(photo_dir, "model.family=srgan", "model.g_width=8", f"train.init_from={result.onnx_path}")
    with pytest.raises(UsageError, match="does not match"):
        Trainer(cfg, out_dir=tmp_path / "a")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "plain.onnx")
    for path, message in [(tmp_path / "plain.onnx", "no ganserve.config"), (tmp_path / "none.onnx", "does not exist")]:
        cfg = sr_config(photo_dir, "model.family=srgan", f"train.init_from={path}")
        with pytest.raises(UsageError, match=message):
            Trainer(cfg, out_dir=tmp_path / "b")

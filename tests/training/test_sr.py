"""Super-resolution: SRResNet/SRGAN models, crop pairs, the two training stages through the
one loop, VGG19 content loss, Y-channel PSNR/SSIM, and ONNX export with dynamic h/w."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from torch import nn

from ganserve.errors import UsageError
from tests.training.helpers import ROOT
from training.checkpoint import load_generator, read_checkpoint
from training.config import RunConfig, apply_overrides, preset, validate
from training.export import PARITY_TOLERANCE, export_checkpoint, read_config
from training.loop import Trainer
from training.losses import VGG19_LAYERS, VGG19Features, load_vgg19
from training.models.srgan import SRDiscriminator, SRResNet
from training.sr_metrics import psnr_y, rgb_to_y, ssim_y, upscale_tiled


def sr_config(photo_dir, *overrides):
    return validate(apply_overrides(preset("srresnet-tiny"), [
        "data.name=sr-folder", f"data.path={photo_dir}", "data.limit=none", "train.log_every=1", *overrides]))


# ---------------------------------------------------------------- models
@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("h,w", [(7, 7), (13, 5), (16, 24)])
def test_srresnet_shapes_at_several_scales(scale, h, w):
    G = SRResNet(dataclasses.replace(preset("srresnet-tiny").model, scale=scale))
    sr = G(torch.rand(2, 3, h, w))
    assert sr.shape == (2, 3, scale * h, scale * w)
    G.eval()
    with torch.no_grad():
        out = G(torch.rand(1, 3, h, w))
    assert out.min() >= 0 and out.max() <= 1  # eval (exported) output is clamped to [0, 1]


def test_srresnet_follows_the_paper():
    cfg = preset("srresnet-x4").model
    G = SRResNet(cfg)
    assert G.head[0].kernel_size == (9, 9) and isinstance(G.head[1], nn.PReLU)
    assert G.tail.kernel_size == (9, 9)
    blocks = [m for m in G.trunk if m.__class__.__name__ == "ResidualBlock"]
    assert len(blocks) == cfg.blocks == 16
    assert [type(m) for m in blocks[0].body] == [nn.Conv2d, nn.BatchNorm2d, nn.PReLU, nn.Conv2d, nn.BatchNorm2d]
    assert sum(isinstance(m, nn.PixelShuffle) for m in G.modules()) == 2  # x4 = two x2 stages
    assert all(m.upscale_factor == 2 for m in G.modules() if isinstance(m, nn.PixelShuffle))


def test_discriminator_vgg_style_returns_logits_and_features():
    cfg = apply_overrides(preset("srgan-x4"), ["model.d_width=8"]).model
    D = SRDiscriminator(cfg)
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and [c.stride[0] for c in convs] == [1, 2] * 4
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(D.head[-1], nn.Linear) and D.head[-1].out_features == 1
    logits, feats = D(torch.rand(3, 3, 96, 96), True)
    assert logits.shape == (3,) and len(feats) == 4 and feats[-1].shape == (3, 64, 6, 6)
    with pytest.raises(ValueError, match="expected shape"):
        D(torch.rand(1, 3, 64, 64))


# ---------------------------------------------------------------- config
def test_old_config_dicts_still_load():
    old = RunConfig().to_dict()
    for section, keys in (("model", ("scale", "blocks", "tile_size", "tile_overlap")),
                          ("train", ("pixel_loss", "content_loss", "vgg_weights", "init_from", "adv_weight"))):
        for k in keys:
            del old[section][k]
    assert RunConfig.from_dict(old) == RunConfig()


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


# ---------------------------------------------------------------- the two stages through the one loop
def params(module):
    return [p.detach().clone() for p in module.parameters()]


@pytest.fixture(scope="module")
def stage1(photo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    trainer = Trainer(sr_config(photo_dir, "train.steps=4"), out_dir=out)
    trainer.fit()
    trainer.save_checkpoint()
    return trainer, out / "checkpoint.pt"


def test_stage1_pixel_loss_has_no_discriminator(stage1):
    trainer, _ = stage1
    assert trainer.D is None and trainer.opt_d is None
    stats = trainer.train_step()
    assert set(stats) == {"loss_g", "loss_pixel"} and torch.isfinite(stats["loss_g"])


@pytest.mark.parametrize("content", ["feature-matching", "pixel"])
def test_stage2_adversarial_starts_from_stage1(stage1, photo_dir, tmp_path, content):
    _, ckpt = stage1
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


def test_init_from_a_different_architecture_is_a_usage_error(stage1, photo_dir, tmp_path):
    _, ckpt = stage1
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


def test_vgg19_content_loss_from_a_torchvision_layout_state_dict(photo_dir, tmp_path, stage1):
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
                    f"train.vgg_weights={tmp_path / 'vgg19.pth'}", f"train.init_from={stage1[1]}")
    stats = Trainer(cfg, out_dir=tmp_path / "run").train_step()
    assert "loss_vgg" in stats and torch.isfinite(stats["loss_vgg"])
    del state["features.2.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(UsageError, match="missing features.2.weight"):
        load_vgg19(tmp_path / "broken.pth")


# ---------------------------------------------------------------- metrics
def test_y_channel_psnr_ssim_conventions():
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 40, 3)).astype(np.uint8)
    assert psnr_y(a, a, border=4) == float("inf") and ssim_y(a, a, border=4) == pytest.approx(1.0)
    b = a.copy()
    b[4:-4, 4:-4] = np.clip(b[4:-4, 4:-4].astype(int) + 10, 0, 255)
    b[:4] = 0  # differences inside the border do not count
    ya, yb = rgb_to_y(a)[4:-4, 4:-4], rgb_to_y(b)[4:-4, 4:-4]
    expected = 10 * np.log10(255**2 / np.mean((ya - yb) ** 2))
    assert psnr_y(a, b, border=4) == pytest.approx(expected)
    assert 0 < ssim_y(a, b, border=4) < 1


# ---------------------------------------------------------------- export
@pytest.fixture(scope="module")
def exported(stage1, tmp_path_factory):
    _, ckpt = stage1
    repo = tmp_path_factory.mktemp("repo")
    return ckpt, export_checkpoint(ckpt, repository=repo, name="srresnet", max_batch_size=8)


def test_onnx_has_dynamic_h_w_and_sr_metadata(exported):
    _, result = exported
    model = onnx.load(str(result.onnx_path))
    assert [i.name for i in model.graph.input] == ["lr"] and [o.name for o in model.graph.output] == ["sr"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[1] == 3 and isinstance(dims[2], str) and isinstance(dims[3], str)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["ganserve.kind"] == "super-resolution" and meta["ganserve.family"] == "srresnet"
    assert meta["ganserve.scale"] == "2" and meta["ganserve.value_range"] == "0,1"
    assert meta["ganserve.input_range"] == "0,1"
    assert meta["ganserve.tile_size"] == "64" and meta["ganserve.tile_overlap"] == "8"


@pytest.mark.parametrize("batch,h,w", [(1, 13, 7), (3, 31, 17), (2, 64, 64), (1, 5, 97)])
def test_export_parity_at_odd_sizes(exported, batch, h, w):
    ckpt, result = exported
    assert result.parity_max_abs_diff <= PARITY_TOLERANCE
    G = load_generator(ckpt).model
    session = ort.InferenceSession(str(result.onnx_path), providers=["CPUExecutionProvider"])
    lr = np.random.default_rng(h * w).random((batch, 3, h, w), dtype=np.float32)
    (sr,) = session.run(["sr"], {"lr": lr})
    assert sr.shape == (batch, 3, 2 * h, 2 * w)
    with torch.no_grad():
        expected = G(torch.from_numpy(lr)).numpy()
    assert np.abs(sr - expected).max() <= PARITY_TOLERANCE
    assert sr.min() >= 0 and sr.max() <= 1


def test_config_pbtxt_takes_any_tile_size(exported):
    """h and w stay dynamic in config.pbtxt (a request may choose its tile size); the default tile is
    the ONNX metadata's."""
    _, result = exported
    config = read_config(result.config_path)
    assert config.max_batch_size == 8 and config.backend == "onnxruntime"
    assert [t.name for t in config.input] == ["lr"] and list(config.input[0].dims) == [3, -1, -1]
    assert [t.name for t in config.output] == ["sr"] and list(config.output[0].dims) == [3, -1, -1]
    assert "64x64 LR tiles" in result.config_path.read_text()


def test_fixed_tile_export_fixes_the_shape_and_the_gateway_keeps_to_it(exported, tmp_path):
    """--fixed-tile: config.pbtxt fixes lr/sr to one tile (the ONNX file is the same); the gateway
    then edge-pads a small image up to that tile, gives the same pixels as with the dynamic config,
    and refuses another tile_size."""
    import asyncio
    import io

    from serve.errors import InvalidArgument
    from serve.runtime import Runtime
    from serve.settings import Settings

    ckpt, dynamic = exported
    fixed = export_checkpoint(ckpt, repository=tmp_path, name="srresnet", max_batch_size=8, fixed_tile=True)
    config = read_config(fixed.config_path)
    assert list(config.input[0].dims) == [3, 64, 64] and list(config.output[0].dims) == [3, 128, 128]
    assert "--fixed-tile" in fixed.config_path.read_text()
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(photo, "PNG")

    async def upscale(repository, **kwargs):
        runtime = Runtime(Settings(model_repository=repository))
        await runtime.load()
        try:
            return await runtime.service.upscale(image=photo.getvalue(), **kwargs)
        finally:
            await runtime.close()

    def pixels(result):
        return np.asarray(Image.open(io.BytesIO(result.image.data)))

    on_fixed = asyncio.run(upscale(tmp_path))
    assert pixels(on_fixed).shape == (40, 60, 3)
    assert np.array_equal(pixels(on_fixed), pixels(asyncio.run(upscale(dynamic.config_path.parent.parent))))
    with pytest.raises(InvalidArgument, match="takes only 64x64 tiles"):
        asyncio.run(upscale(tmp_path, tile_size=32))


def test_fixed_tile_is_for_super_resolution_only():
    from training.export import with_fixed_tile
    from training.families import ExportSpec

    with pytest.raises(UsageError, match="super-resolution"):
        with_fixed_tile(ExportSpec(kind="unconditional", inputs={"z": ("batch", 4)}, outputs={}, metadata={}))


def test_evaluate_prints_model_vs_bicubic_and_writes_the_card(exported, photo_dir, tmp_path):
    ckpt, result = exported
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    for model in (ckpt, result.onnx_path):
        run = subprocess.run([sys.executable, "-m", "ganserve", "evaluate", str(model), "--data", str(photo_dir),
                              "--json", str(tmp_path / "m.json")], capture_output=True, text=True, cwd=ROOT,
                             env=env, timeout=180, check=False)
        assert run.returncode == 0, run.stderr
        assert "bicubic" in run.stdout and "photo0.png" in run.stdout and "mean" in run.stdout
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["kind"] == "super-resolution" and report["scale"] == 2 and len(report["images"]) == 3
    from training.model_card import write_model_card

    card = write_model_card(ckpt, metrics_path=tmp_path / "m.json", result=result).read_text()
    assert "SRResNet" in card and "bicubic" in card and "Quality target: the PSNR-oriented model beats bicubic" in card


def test_card_reproduce_block_lists_each_distinct_resume_command():
    from training.model_card import _train_commands

    train = "ganserve train --preset p --out runs/x"
    resume = "ganserve train --preset p --out runs/x --resume --steps 900"
    assert _train_commands({"argv": train, "resumed_with": [resume, resume]}) == f"{train}\n{resume}"
    assert _train_commands({"argv": train}) == train


@pytest.mark.parametrize("shape", [(130, 77, 3), (20, 150, 3), (64, 64, 3), (9, 5, 3)])
def test_reference_tiling_is_exact_for_a_pointwise_upscaler(shape):
    def nearest(x):
        return np.repeat(np.repeat(x, 2, 0), 2, 1)

    lr = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    assert np.array_equal(upscale_tiled(nearest, lr, scale=2, tile=64, overlap=8), nearest(lr))

"""Super-resolution: SRResNet/SRGAN models, crop pairs, the two training stages through the
one loop, VGG19 content loss, Y-channel PSNR/SSIM, and ONNX export with dynamic h/w."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.training.helpers import ROOT
from training.sr_metrics import psnr_y, rgb_to_y, ssim_y, upscale_tiled


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


def test_evaluate_prints_model_vs_bicubic_and_writes_the_card(sr_exported, photo_dir, tmp_path):
    ckpt, result = sr_exported
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

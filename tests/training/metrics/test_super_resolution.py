"""ganserve.training.metrics.super_resolution: Y-channel PSNR/SSIM conventions, the reference tiling, and the
evaluation of a checkpoint and of its ONNX export next to bicubic."""

import numpy as np
import pytest

from ganserve.training.metrics.super_resolution import (
    evaluate,
    format_report,
    psnr_y,
    report_to_json,
    rgb_to_y,
    ssim_y,
    upscale_tiled,
)


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


def test_checkpoint_and_onnx_are_evaluated_next_to_bicubic(sr_exported, photo_dir):
    ckpt, result = sr_exported
    reports = [evaluate(model, data=photo_dir) for model in (ckpt, result.onnx_path)]
    for report in reports:
        text = format_report(report)
        assert "bicubic" in text and "photo0.png" in text and "mean" in text
        d = report_to_json(report)
        assert d["kind"] == "super-resolution" and d["scale"] == 2 and len(d["images"]) == 3
    # the exported model scores what the checkpoint scores (uint8 output: equal up to rare rounding)
    assert reports[0].psnr == pytest.approx(reports[1].psnr, abs=0.01)


@pytest.mark.parametrize("shape", [(130, 77, 3), (20, 150, 3), (64, 64, 3), (9, 5, 3)])
def test_reference_tiling_is_exact_for_a_pointwise_upscaler(shape):
    def nearest(x):
        return np.repeat(np.repeat(x, 2, 0), 2, 1)

    lr = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    assert np.array_equal(upscale_tiled(nearest, lr, scale=2, tile=64, overlap=8), nearest(lr))

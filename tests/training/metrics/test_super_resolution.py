"""ganserve.training.metrics.super_resolution: Y-channel PSNR/SSIM conventions, the reference tiling, and the
evaluation of a checkpoint and of its ONNX export next to bicubic."""

import numpy as np
import pytest

from ganserve.training.metrics.super_resolution import (
    evaluate,
    format_report,
    hf_energy,
    psnr_y,
    report_to_json,
    rgb_to_y,
    sample_sheet,
    sharpness_y,
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


def _grey(y: np.ndarray) -> np.ndarray:
    """A [H, W] array of grey levels as a uint8 RGB image (R = G = B, so Y = 16 + 219/255 * level)."""
    return np.repeat(np.clip(np.round(y), 0, 255).astype(np.uint8)[..., None], 3, 2)


def test_sharpness_is_laplacian_energy_relative_to_the_hr_image():
    # a checkerboard of +-a: every 3x3 Laplacian is -8 times the centre, so its energy is 64 a^2 per pixel
    yy, xx = np.mgrid[:40, :40]
    board = np.where((yy + xx) % 2, 1.0, -1.0)
    assert hf_energy(3.0 * board) == pytest.approx(64 * 9.0)
    # a linear ramp has no high-frequency energy: adding one changes nothing
    ramp = 0.5 * yy + 0.25 * xx
    assert hf_energy(ramp) == pytest.approx(0.0, abs=1e-12)
    assert hf_energy(3.0 * board + ramp) == pytest.approx(64 * 9.0)
    # on images: energy, not amplitude (twice the texture contrast -> 4x), output over HR (not HR over output)
    rng = np.random.default_rng(0)
    texture = rng.normal(0.0, 1.0, (64, 64))
    hr = _grey(128 + 20 * texture)
    sharper = _grey(128 + 40 * texture)
    assert sharpness_y(hr, hr, border=4) == pytest.approx(1.0)
    assert sharpness_y(sharper, hr, border=4) == pytest.approx(4.0, rel=0.02)
    assert sharpness_y(hr, sharper, border=4) == pytest.approx(0.25, rel=0.02)
    # a blur (3x3 box) keeps the mean and loses most of the high-frequency energy
    pad = np.pad(128 + 20 * texture, 1, mode="edge")
    blurred = _grey(sum(pad[i:i + 64, j:j + 64] for i in range(3) for j in range(3)) / 9)
    assert 0.0 < sharpness_y(blurred, hr, border=4) < 0.2
    # the border is cropped: noise added inside it does not count
    edged = hr.copy()
    edged[:4] = rng.integers(0, 256, edged[:4].shape)
    assert sharpness_y(edged, hr, border=4) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no high-frequency energy"):
        sharpness_y(hr, _grey(np.full((64, 64), 100.0)), border=4)


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
    for report in reports:
        assert 0 < report.bicubic_sharpness < 1 and report.sharpness > 0
        assert report.reference == "" and report.reference_psnr is None


def test_a_second_model_is_measured_alongside_and_drawn_in_the_sample_sheet(sr_exported, photo_dir, tmp_path):
    from PIL import Image

    ckpt, result = sr_exported
    alone = evaluate(ckpt, data=photo_dir, tiling=False)
    report = evaluate(result.onnx_path, data=photo_dir, tiling=False, compare=ckpt)
    assert report.reference == str(ckpt)
    assert report.reference_psnr == pytest.approx(alone.psnr) and report.reference_ssim == pytest.approx(alone.ssim)
    assert report.reference_sharpness == pytest.approx(alone.sharpness)
    assert all(i.reference_psnr is not None for i in report.images)
    assert "ref PSNR" in format_report(report) and report_to_json(report)["reference_sharpness"] is not None
    sheet = sample_sheet(result.onnx_path, tmp_path / "s.png", data=photo_dir, compare=ckpt, crop=32, zoom=2)
    image = Image.open(sheet)
    # five columns (LR, bicubic, the compared model, this model, HR) of 64 px, a row per photo
    assert image.size == (90 + 5 * (64 + 4), 16 + 3 * (64 + 4))


@pytest.mark.parametrize("shape", [(130, 77, 3), (20, 150, 3), (64, 64, 3), (9, 5, 3)])
def test_reference_tiling_is_exact_for_a_pointwise_upscaler(shape):
    def nearest(x):
        return np.repeat(np.repeat(x, 2, 0), 2, 1)

    lr = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    assert np.array_equal(upscale_tiled(nearest, lr, scale=2, tile=64, overlap=8), nearest(lr))

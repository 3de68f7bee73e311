"""LAPGAN in training: the pyramid's arithmetic (down, up, bands), the level shapes, the family through
the one training loop, its export (three level models, the ensemble's wiring) and the ensemble's folder
as a model that evaluate and the model card can run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.checkpoint import model_kind
from ganserve.training.export import read_config
from ganserve.training.families import apply_overrides, validate
from ganserve.training.files import onnx_pyramid
from ganserve.training.metrics.unconditional import generate, pyramid_sheet
from ganserve.training.models.lapgan import LapGANGenerator, LevelGenerator, down, pyramid, up
from ganserve.training.presets import preset
from tests.training.lapgan_helpers import train_tiny_lapgan


def _bilinear_x2(x: np.ndarray) -> np.ndarray:
    """Reference up: output pixel i samples the input at (i + 0.5) / 2 - 0.5, clamped to the edge."""
    n = x.shape[-1]
    src = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = src - lo
    rows = x[..., lo, :] * (1 - w)[:, None] + x[..., hi, :] * w[:, None]
    return rows[..., lo] * (1 - w) + rows[..., hi] * w


def test_down_up_and_bands_are_the_laplacian_pyramid() -> None:
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    levels = pyramid(x, 2)
    assert [tuple(i.shape[-2:]) for i in levels] == [(28, 28), (14, 14), (7, 7)]
    np.testing.assert_allclose(down(x).numpy(), x.numpy().reshape(3, 1, 14, 2, 14, 2).mean(axis=(3, 5)), atol=1e-6)
    np.testing.assert_allclose(up(levels[2]).numpy(), _bilinear_x2(levels[2].numpy()), atol=1e-6)
    for k in range(2):  # I_k = up(I_{k+1}) + h_k, exactly
        band = levels[k] - up(levels[k + 1])
        torch.testing.assert_close(up(levels[k + 1]) + band, levels[k])
        assert band.abs().mean() < levels[k].abs().mean()  # the band is what the coarse image lacks


def test_level_shapes_and_a_level_is_its_upsampled_coarse_image_plus_band() -> None:
    G = LapGANGenerator(image_size=28, channels=1, levels=2, coarse_latent_dim=32, level_latent_dim=16,
                        coarse_width=64, width=8).eval()
    assert G.latent_dim == 64 and G.latent_dims == (32, 16, 16)
    z = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = G.all_levels(z)
        assert [tuple(i.shape) for i in images] == [(5, 1, 7, 7), (5, 1, 14, 14), (5, 1, 28, 28)]
        _, z1, z0 = G.split(z)
        torch.testing.assert_close(z0, z[:, 48:])  # split coarse level first
        level: LevelGenerator = G.levels[0]
        upsampled = up(images[0])
        torch.testing.assert_close(images[1], (upsampled + level.band(z1, upsampled)).clamp(-1, 1))
        torch.testing.assert_close(G(z), images[-1])
    with pytest.raises(ValueError, match="LapGANGenerator input"):
        G(torch.randn(2, 63))


@pytest.mark.parametrize(("override", "message"), [
    (["model.levels=3"], "cannot be halved model.levels=3 times"),
    (["model.image_size=30"], "cannot be halved"),
    (["model.levels=0"], "model.levels must be >= 1"),
    (["train.loss=wgan-gp"], "use bce, hinge or lsgan"),
    (["model.level_latent_dim=0"], "model.level_latent_dim must be positive"),
])
def test_impossible_pyramids_are_refused(override: list[str], message: str) -> None:
    cfg = apply_overrides(preset("lapgan-tiny"), override)
    with pytest.raises(UsageError, match=message):
        validate(cfg)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return train_tiny_lapgan(tmp_path_factory.mktemp("lapgan"))


def test_export_writes_three_levels_and_their_ensemble(tiny: tuple[Path, Path]) -> None:
    _, repo = tiny
    assert sorted(p.name for p in repo.iterdir()) == ["lapgan", "lapgan_coarse", "lapgan_level0", "lapgan_level1"]
    config = read_config(repo / "lapgan" / "config.pbtxt")
    assert config.platform == "ensemble" and config.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in config.input] == [("z_2", [8]), ("z_1", [4]), ("z_0", [4])]
    assert [(o.name, list(o.dims)) for o in config.output] == [
        ("image", [1, 8, 8]), ("image_1", [1, 4, 4]), ("image_2", [1, 2, 2])]
    wiring = [(s.model_name, dict(s.input_map), dict(s.output_map)) for s in config.ensemble_scheduling.step]
    assert wiring == [
        ("lapgan_coarse", {"z": "z_2"}, {"image": "image_2"}),
        ("lapgan_level1", {"z": "z_1", "coarse": "image_2"}, {"image": "image_1"}),
        ("lapgan_level0", {"z": "z_0", "coarse": "image_1"}, {"image": "image"})]
    level = read_config(repo / "lapgan_level1" / "config.pbtxt")
    assert [(i.name, list(i.dims)) for i in level.input] == [("z", [4]), ("coarse", [1, 2, 2])]
    assert list((repo / "lapgan" / "1").iterdir()) == [repo / "lapgan" / "1" / "README.md"]


def test_the_ensemble_folder_is_the_trained_pyramid(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """evaluate's ONNX path (the levels chained on the seed's split z) and the checkpoint's generator give
    the same uint8 images; the folder is an unconditional model; its sheet draws every level."""
    checkpoint, repo = tiny
    assert model_kind(repo / "lapgan") == "unconditional"
    from_onnx = generate(repo / "lapgan", samples=20, seed=3, truncation=1.0)
    from_checkpoint = generate(checkpoint, samples=20, seed=3, truncation=1.0)
    assert from_onnx.shape == (20, 1, 8, 8) and from_onnx.dtype == torch.uint8
    assert (from_onnx.int() - from_checkpoint.int()).abs().max() <= 1
    run, latent = onnx_pyramid(repo / "lapgan")
    levels = run(np.zeros((2, latent), np.float32))
    assert latent == 16 and [x.shape for x in levels] == [(2, 1, 2, 2), (2, 1, 4, 4), (2, 1, 8, 8)]
    from PIL import Image

    sheet = Image.open(pyramid_sheet(repo / "lapgan", tmp_path / "samples.png"))
    assert sheet.mode == "L" and sheet.size[1] > 3 * 3 * 16  # 3 blocks of 3 level rows
    with pytest.raises(UsageError, match="not a Triton ensemble"):
        onnx_pyramid(repo / "lapgan_level0")

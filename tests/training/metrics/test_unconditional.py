"""ganserve.training.metrics.unconditional: mode coverage, the reference transforms, and the MNIST feature
space that FID/KID are computed in."""

import json

import numpy as np
import pytest
import torch

from ganserve.training.data.images import load_mnist
from ganserve.training.metrics.distances import fid
from ganserve.training.metrics.unconditional import (
    blur_3x3,
    features_and_predictions,
    mode_coverage,
    seed_latents,
    shift_one_pixel,
)


def test_mode_coverage():
    uniform = np.repeat(np.arange(10), 100)
    cov = mode_coverage(uniform)
    assert cov["classes_covered"] == 10 and cov["min_class_share"] == pytest.approx(0.1)
    assert cov["kl_to_uniform"] == pytest.approx(0.0, abs=1e-12)
    collapsed = np.array([3] * 990 + [1] * 10)
    cov = mode_coverage(collapsed)
    assert cov["classes_covered"] == 2 and cov["min_class_share"] == 0.0
    assert cov["kl_to_uniform"] == pytest.approx(0.99 * np.log(9.9) + 0.01 * np.log(0.1))


def test_reference_transforms():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    x[0, 0, 1, 1] = 90
    assert shift_one_pixel(x)[0, 0, 1, 2] == 90 and shift_one_pixel(x)[0, 0, 1, 1] == 0
    assert blur_3x3(x)[0, 0, 1, 1] == 10 and blur_3x3(x)[0, 0, 0, 0] == 10


def test_classifier_accuracy_and_reference_ordering(mnist_dir):
    test = load_mnist(mnist_dir, split="test")
    feats, pred = features_and_predictions(test.images[:2000])
    assert (torch.from_numpy(pred) == test.labels[:2000]).float().mean() > 0.98
    real, _ = features_and_predictions(test.images[2000:4000])
    floor = fid(feats, real)
    blurred = fid(features_and_predictions(blur_3x3(test.images[:2000]))[0], real)
    assert floor < blurred  # the feature space sees blur




def test_seed_latents_follow_the_model_contract():
    """One PCG64 generator per seed; truncation redraws out-of-range components from it (the gateway's z)."""
    plain = seed_latents(range(3, 6), latent_dim=100)
    assert plain.dtype == np.float32 and plain.shape == (3, 100)
    assert np.array_equal(plain[1], np.random.Generator(np.random.PCG64(4)).standard_normal(100, dtype=np.float32))
    truncated = seed_latents(range(3, 6), latent_dim=100, truncation=0.5)
    assert np.abs(truncated).max() <= 0.5
    kept = np.abs(plain) <= 0.5
    assert np.array_equal(truncated[kept], plain[kept])  # only the components outside are redrawn
    serve_seeds = pytest.importorskip("ganserve.serve.seeds")  # the gateway, where installed
    assert np.array_equal(truncated[2], serve_seeds.latent(5, latent_dim=100, truncation=0.5))


def test_evaluate_accepts_a_tiny_digits_checkpoint_with_a_truncation_curve(dcgan_tiny, tmp_path, capsys):
    """An 8x8 scikit-learn-digits model needs no --data: it is measured against those digits."""
    from ganserve.cli import main

    out = tmp_path / "m.json"
    assert main(["evaluate", str(dcgan_tiny / "run" / "checkpoint.pt"), "--samples", "1000", "--truncation-curve",
                 "--no-references", "--json", str(out)]) == 0
    assert "truncation curve" in capsys.readouterr().out
    reports = json.loads(out.read_text())
    assert [r["truncation"] for r in reports] == [None, 1.5, 1.0, 0.7, 0.5]
    assert reports[0]["kid"] is not None and all(r["kid"] is None for r in reports[1:])  # KID only untruncated
    diversity = [r["pixel_diversity"] for r in reports]
    assert diversity == sorted(diversity, reverse=True)  # a tighter z gives more alike images

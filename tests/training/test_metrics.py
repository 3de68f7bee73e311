import numpy as np
import pytest
import torch

from training.classifier import ASSET, CLASSIFIER_SHA256, load_classifier, sha256
from training.metrics import blur_3x3, features_and_predictions, fid, kid, mode_coverage, shift_one_pixel


def test_fid_is_zero_for_the_same_set_and_grows_with_a_mean_shift():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 8))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    # for equal covariances FID is the squared distance of the means
    assert fid(a + 2.0, a) == pytest.approx(8 * 4.0, rel=1e-6)


def test_kid_is_unbiased_near_zero_for_the_same_distribution():
    rng = np.random.default_rng(1)
    same = kid(rng.standard_normal((1500, 8)), rng.standard_normal((1500, 8)), subsets=20, subset_size=500)
    shifted = kid(rng.standard_normal((1500, 8)) + 1, rng.standard_normal((1500, 8)), subsets=20, subset_size=500)
    assert abs(same[0]) < 3 * same[1] + 1e-3
    assert shifted[0] > 10 * abs(same[0])


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


def test_classifier_is_pinned_by_checksum():
    assert sha256(ASSET) == CLASSIFIER_SHA256


def test_classifier_accuracy_and_reference_ordering(mnist_dir):
    from training.data.images import load_mnist

    test = load_mnist(mnist_dir, split="test")
    feats, pred = features_and_predictions(test.images[:2000])
    assert (torch.from_numpy(pred) == test.labels[:2000]).float().mean() > 0.98
    real, _ = features_and_predictions(test.images[2000:4000])
    floor = fid(feats, real)
    blurred = fid(features_and_predictions(blur_3x3(test.images[:2000]))[0], real)
    assert floor < blurred  # the feature space sees blur


def test_checksum_mismatch_is_refused(tmp_path):
    from ganserve.errors import UsageError

    bad = tmp_path / "c.pt"
    bad.write_bytes(ASSET.read_bytes() + b"x")
    with pytest.raises(UsageError, match="has sha256"):
        load_classifier.__wrapped__(bad)

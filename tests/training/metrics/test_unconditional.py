"""ganserve.training.metrics.unconditional: mode coverage, the reference transforms, and the MNIST feature
space that FID/KID are computed in."""

import numpy as np
import pytest
import torch

from ganserve.training.data.images import load_mnist
from ganserve.training.metrics.distances import fid
from ganserve.training.metrics.unconditional import (
    blur_3x3,
    features_and_predictions,
    mode_coverage,
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



"""ganserve.training.metrics.classifiers: the pinned measuring classifiers and the one trainer they share."""

import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.metrics.classifiers import (
    ATTRIBUTES_ASSET,
    ATTRIBUTES_SHA256,
    MNIST_ASSET,
    MNIST_SHA256,
    AttributeClassifier,
    MnistClassifier,
    accuracy,
    fit,
    load_attribute_classifier,
    load_classifier,
    sha256,
)


def test_classifier_is_pinned_by_checksum():
    assert sha256(MNIST_ASSET) == MNIST_SHA256


def test_checksum_mismatch_is_refused(tmp_path):
    bad = tmp_path / "c.pt"
    bad.write_bytes(MNIST_ASSET.read_bytes() + b"x")
    with pytest.raises(UsageError, match="has sha256"):
        load_classifier.__wrapped__(bad)


def test_attribute_classifier_is_pinned_by_checksum():
    assert sha256(ATTRIBUTES_ASSET) == ATTRIBUTES_SHA256
    net = load_attribute_classifier()
    features, digit, colour = net(torch.zeros(2, 3, 28, 28))
    assert features.shape == (2, 128) and digit.shape == (2, 10) and colour.shape == (2, 9)


@pytest.mark.parametrize("make,targets", [
    (MnistClassifier, {"digit": 10}),
    (AttributeClassifier, {"digit": 10, "colour": 9}),
])
def test_one_trainer_fits_every_head_of_both_classifiers(make, targets):
    """A separable toy set (the label drawn as brightness): after a few epochs each head reads it."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 9, (256,), generator=gen)
    channels = 3 if make is AttributeClassifier else 1
    images = (labels * 28).to(torch.uint8)[:, None, None, None].expand(-1, channels, 28, 28).contiguous()
    torch.manual_seed(0)
    net = fit(make(), images, {head: labels for head in targets}, epochs=8, batch_size=32, seed=0, augment_shift=2)
    assert not net.training
    acc = accuracy(net, images, {head: labels for head in targets})
    assert set(acc) == set(targets) and min(acc.values()) > 0.5

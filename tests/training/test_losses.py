import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.losses import LOSS_REGISTRY, build_loss, gradient_penalty, joint_embedding_loss


@pytest.mark.parametrize("name", sorted(LOSS_REGISTRY))
def test_losses_prefer_correct_discriminator(name):
    loss = build_loss(name)
    good = loss.d_loss(torch.full((8,), 3.0), torch.full((8,), -3.0))
    bad = loss.d_loss(torch.full((8,), -3.0), torch.full((8,), 3.0))
    assert torch.isfinite(good) and good < bad
    # G prefers fakes that D scores as real
    assert loss.g_loss(torch.full((8,), 3.0)) < loss.g_loss(torch.full((8,), -3.0))


def test_non_saturating_bce_matches_torch():
    r, f = torch.randn(16), torch.randn(16)
    loss = build_loss("bce")
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(r, torch.ones(16)) + bce(f, torch.zeros(16))
    assert torch.allclose(loss.d_loss(r, f), expected)
    assert torch.allclose(loss.g_loss(f), bce(f, torch.ones(16)))


def test_one_sided_label_smoothing_moves_only_the_real_target():
    r, f = torch.randn(16), torch.randn(16)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    smoothed = build_loss("bce", label_smoothing=0.1)
    expected = bce(r, torch.full((16,), 0.9)) + bce(f, torch.zeros(16))
    assert torch.allclose(smoothed.d_loss(r, f), expected)


def test_gradient_penalty_zero_for_unit_norm_critic():
    w = torch.zeros(1, 4, 2, 2)
    w[0, 0, 0, 0] = 1.0  # gradient of sum(x * w) has norm exactly 1
    critic = lambda x: (x * w).flatten(1).sum(1)
    gp = gradient_penalty(critic, torch.randn(6, 4, 2, 2), torch.randn(6, 4, 2, 2))
    assert float(gp) == pytest.approx(0.0, abs=1e-10)
    gp2 = gradient_penalty(lambda x: 3 * critic(x), torch.randn(6, 4, 2, 2), torch.randn(6, 4, 2, 2))
    assert float(gp2) == pytest.approx(4.0)  # (3 - 1)^2


def test_unknown_loss_lists_valid_names():
    with pytest.raises(UsageError, match="valid losses: bce, hinge, lsgan, wgan-gp"):
        build_loss("wasserstein")


def test_joint_embedding_loss_prefers_matching_classes():
    classes = torch.tensor([0, 1, 2, 0])
    img = torch.eye(4)[[0, 1, 2, 0]]
    good = joint_embedding_loss(img, img.clone(), classes)
    bad = joint_embedding_loss(img, img[[1, 2, 0, 1]], classes)
    assert good < bad

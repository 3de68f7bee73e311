"""ganserve.training.metrics.distances: FID and KID between feature sets."""

import numpy as np
import pytest

from ganserve.training.metrics.distances import fid, kid


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

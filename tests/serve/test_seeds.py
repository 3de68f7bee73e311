"""Seeds -> z exactly as docs/model-contract.md says; truncation and slerp."""

import numpy as np
import pytest

from ganserve.serve import seeds


def test_latent_is_the_documented_generator() -> None:
    expected = np.random.Generator(np.random.PCG64(1234)).standard_normal(100, dtype=np.float32)
    z = seeds.latent(1234, latent_dim=100)
    assert z.dtype == np.float32 and z.shape == (100,)
    assert np.array_equal(z, expected)


def test_latents_are_per_seed_so_batching_cannot_change_them() -> None:
    many = seeds.latents([7, 8, 9], latent_dim=16)
    assert np.array_equal(many[1], seeds.latent(8, latent_dim=16))


@pytest.mark.parametrize("seed", [0, 2**64 - 1])
def test_seed_range_ends_are_valid(seed: int) -> None:
    assert seeds.latent(seed, latent_dim=4).shape == (4,)


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_outside_64_bits_is_refused(seed: int) -> None:
    with pytest.raises(ValueError, match="seed"):
        seeds.latent(seed, latent_dim=4)


def test_truncation_redraws_from_the_same_generator_in_index_order() -> None:
    t = 0.5
    z = seeds.latent(3, latent_dim=64, truncation=t)
    assert np.all(np.abs(z) <= np.float32(t))
    # The documented procedure, one value at a time: sweep in index order until all are inside.
    rng = np.random.Generator(np.random.PCG64(3))
    ref = rng.standard_normal(64, dtype=np.float32)
    while (outside := np.flatnonzero(np.abs(ref) > np.float32(t))).size:
        for i in outside:
            ref[i] = rng.standard_normal(dtype=np.float32)
    assert np.array_equal(z, ref)
    untouched = np.abs(seeds.latent(3, latent_dim=64)) <= t
    assert np.array_equal(z[untouched], seeds.latent(3, latent_dim=64)[untouched])


def test_draw_seed_fits_json_and_leaves_room_for_seed_plus_i() -> None:
    drawn = {seeds.draw_seed() for _ in range(100)}
    assert len(drawn) > 90 and max(drawn) < 2**52


def test_slerp_keeps_the_ends_exact_and_the_norm_between() -> None:
    a, b = seeds.latent(1, latent_dim=32), seeds.latent(2, latent_dim=32)
    walk = seeds.slerp(a, b, frames=5)
    assert walk.shape == (5, 32) and walk.dtype == np.float32
    assert np.array_equal(walk[0], a) and np.array_equal(walk[-1], b)
    norms = np.linalg.norm(walk, axis=1)
    assert norms.min() >= min(norms[0], norms[-1]) - 1e-4  # slerp does not shrink toward the origin


def test_slerp_of_parallel_vectors_falls_back_to_lerp() -> None:
    a = np.ones(4, np.float32)
    assert np.allclose(seeds.slerp(a, 2 * a, frames=3)[1], 1.5 * a)


def test_truncation_below_the_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="truncation"):
        seeds.latent(1, latent_dim=4, truncation=seeds.MIN_TRUNCATION / 2)
    assert np.all(np.abs(seeds.latent(1, latent_dim=512, truncation=seeds.MIN_TRUNCATION)) <= 0.05)

"""Seeds -> latent vectors, exactly as ``docs/model-contract.md`` specifies; slerp for latent walks.

An image's z depends on its seed alone (never on its batch), and is computed on the CPU with NumPy's
PCG64, so every adapter and backend produces the same z for the same seed.
"""

from __future__ import annotations

import secrets

import numpy as np

SEED_MAX = 2**64 - 1  # seeds are unsigned 64-bit integers
# Drawn seeds stay below 2**52: exact as JSON numbers even in JavaScript (2**53), with room for seed + i.
_DRAWN_SEED_BITS = 52
# Smallest truncation served: below it the redraw loop gets long (a component lands in [-t, t] with
# probability ~0.8 t), so a tiny t would let one request burn a core.
MIN_TRUNCATION = 0.05
_FLOAT32_SAFE = 1e30


def draw_seed() -> int:
    """A fresh random seed for a request that gave none (returned to the client)."""
    return secrets.randbits(_DRAWN_SEED_BITS)


def latent(seed: int, *, latent_dim: int, truncation: float | None = None) -> np.ndarray:
    """z for one image: ``float32 [latent_dim]``.

    ``Generator(PCG64(seed)).standard_normal(latent_dim, dtype=float32)``. With ``truncation`` t > 0,
    every component with ``|z_i| > t`` is redrawn from the same generator until it lies in [-t, t]:
    in rounds, each round drawing one value per out-of-range component, assigned in index order
    (one ``standard_normal(k)`` call per round, which equals k single draws in a row).
    """
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be in [0, 2**64 - 1], got {seed}")
    rng = np.random.Generator(np.random.PCG64(seed))
    z = rng.standard_normal(latent_dim, dtype=np.float32)
    if truncation is not None:
        if not truncation >= MIN_TRUNCATION:
            raise ValueError(f"truncation must be >= {MIN_TRUNCATION}, got {truncation}")
        bound = np.float32(min(truncation, _FLOAT32_SAFE))  # beyond ~6 nothing is redrawn anyway
        outside = np.abs(z) > bound
        while outside.any():
            z[outside] = rng.standard_normal(int(outside.sum()), dtype=np.float32)
            outside = np.abs(z) > bound
    return z


def latents(seeds: list[int], *, latent_dim: int, truncation: float | None = None) -> np.ndarray:
    """z for several images, one seed each: ``float32 [len(seeds), latent_dim]``."""
    return np.stack([latent(s, latent_dim=latent_dim, truncation=truncation) for s in seeds])


def slerp(z0: np.ndarray, z1: np.ndarray, *, frames: int) -> np.ndarray:
    """Spherical interpolation from ``z0`` to ``z1`` (both ends included): ``float32 [frames, D]``.

    Computed in float64 and rounded once, so the walk is the same on every machine. Falls back to
    linear interpolation when the two vectors are (anti-)parallel, where slerp is undefined.
    """
    if frames < 2:
        raise ValueError(f"an interpolation needs at least 2 frames, got {frames}")
    a, b = z0.astype(np.float64), z1.astype(np.float64)
    t = np.linspace(0.0, 1.0, frames)[:, None]  # [frames, 1]
    cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), np.finfo(np.float64).tiny)
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        walk = (1.0 - t) * a + t * b
    else:
        walk = (np.sin((1.0 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    walk = walk.astype(np.float32)
    walk[0], walk[-1] = z0, z1  # the ends are exactly the two seeds' images
    return walk

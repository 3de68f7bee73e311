"""The batch sampler of the training loop: seeded, resumable, sharded across processes."""

from __future__ import annotations

import torch

from ganserve.errors import UsageError


class BatchSampler:
    """Seeded epoch permutations, sharded across ranks, with a resumable position.

    Each epoch draws a permutation from ``seed + epoch`` (so any position can be restored exactly),
    keeps the ``rank``-th of every ``world`` indices, and yields full batches only.
    """

    def __init__(self, n: int, *, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        per_rank = n // world
        if per_rank < batch_size:
            raise UsageError(f"data set of {n} examples is too small for batch size {batch_size}"
                             f" on {world} process(es)")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.position = 0, 0
        self._perm = self._permutation()

    def _permutation(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[self.rank: (self.n // self.world) * self.world: self.world]

    def next_indices(self) -> torch.Tensor:
        if self.position + self.batch_size > self._perm.numel():
            self.epoch, self.position = self.epoch + 1, 0
            self._perm = self._permutation()
        idx = self._perm[self.position: self.position + self.batch_size]
        self.position += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._perm = self._permutation()

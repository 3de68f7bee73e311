"""ganserve.training.data.sampler: the seeded, resumable, sharded batch sampler."""

import pytest
import torch

from ganserve.errors import UsageError
from ganserve.training.data.sampler import BatchSampler


def test_sampler_is_resumable_and_shards_disjointly():
    a = BatchSampler(100, batch_size=8, seed=3)
    first = [a.next_indices() for _ in range(20)]  # crosses an epoch boundary (12 batches / epoch)
    b = BatchSampler(100, batch_size=8, seed=3)
    for _ in range(7):
        b.next_indices()
    state = b.state_dict()
    c = BatchSampler(100, batch_size=8, seed=3)
    c.load_state_dict(state)
    assert all(torch.equal(c.next_indices(), first[i]) for i in range(7, 20))
    r0, r1 = BatchSampler(100, batch_size=8, seed=3, rank=0, world=2), BatchSampler(100, batch_size=8, seed=3, rank=1, world=2)
    s0 = set(torch.cat([r0.next_indices() for _ in range(6)]).tolist())
    s1 = set(torch.cat([r1.next_indices() for _ in range(6)]).tolist())
    assert not s0 & s1


def test_batch_larger_than_data_is_an_error():
    with pytest.raises(UsageError, match="too small for batch size 64"):
        BatchSampler(10, batch_size=64, seed=0)

"""Aspect-ratio grouped DDP batches and the inference sharding."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sparse_rcnn.platform.data.sampler import GroupedBatchSampler, InferenceSampler


def all_ranks(groups, batch_size, world_size, epoch=0, seed=0):
    out = []
    for rank in range(world_size):
        s = GroupedBatchSampler(
            groups, batch_size, data_seed=seed, rank=rank, world_size=world_size
        )
        s.set_epoch(epoch)
        out.append(s.batches())
    return out


def test_batches_never_mix_groups_and_ranks_run_equal_steps():
    groups = np.random.default_rng(0).integers(0, 2, 37)  # (37,) landscape/portrait flags
    for world_size in (1, 2, 3):
        shards = all_ranks(groups, 2, world_size)
        lengths = {len(b) for b in shards}
        assert len(lengths) == 1
        sampler = GroupedBatchSampler(groups, 2, data_seed=0, world_size=world_size)
        assert lengths == {len(sampler)}
        for batches in shards:
            for batch in batches:
                assert len(batch) == 2 and len({int(groups[i]) for i in batch}) == 1


def test_shards_cover_every_index_and_repeat_only_for_padding():
    groups = np.array([0] * 7 + [1] * 10)
    shards = all_ranks(groups, 2, 3)  # chunks of 6: group 0 padded 7 -> 12, group 1 10 -> 12
    counts = Counter(i for batches in shards for batch in batches for i in batch)
    assert set(counts) == set(range(17))
    assert sum(counts.values()) == 24
    assert sum(c - 1 for i, c in counts.items() if groups[i] == 0) == 5
    assert sum(c - 1 for i, c in counts.items() if groups[i] == 1) == 2


def test_shards_are_disjoint_when_no_padding_is_needed():
    groups = np.array([0, 1] * 12)  # 12 per group, chunk 2 * 3 = 6
    shards = [{i for batch in batches for i in batch} for batches in all_ranks(groups, 2, 3)]
    assert all(len(s) == 8 for s in shards)
    assert (
        not (shards[0] & shards[1]) and not (shards[1] & shards[2]) and not (shards[0] & shards[2])
    )
    assert set.union(*shards) == set(range(24))


def test_order_is_a_function_of_data_seed_and_epoch():
    groups = np.zeros(40, dtype=np.int64)
    assert all_ranks(groups, 4, 2, epoch=1, seed=3) == all_ranks(groups, 4, 2, epoch=1, seed=3)
    assert all_ranks(groups, 4, 2, epoch=1, seed=3) != all_ranks(groups, 4, 2, epoch=2, seed=3)
    assert all_ranks(groups, 4, 2, epoch=1, seed=3) != all_ranks(groups, 4, 2, epoch=1, seed=4)


def test_iteration_yields_index_epoch_keys():
    sampler = GroupedBatchSampler([0, 0, 1, 1], 2, data_seed=0)
    sampler.set_epoch(5)
    batches = list(sampler)
    assert len(batches) == 2
    assert sorted(i for b in batches for i, _ in b) == [0, 1, 2, 3]
    assert {e for b in batches for _, e in b} == {5}
    ordered = GroupedBatchSampler([1, 0, 1, 0], 1, data_seed=0, shuffle=False)
    assert ordered.batches() == [[1], [3], [0], [2]]  # group 0 first, in index order


def test_invalid_arguments():
    with pytest.raises(ValueError, match="rank"):
        GroupedBatchSampler([0], 1, data_seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        GroupedBatchSampler([0], 0, data_seed=0)
    with pytest.raises(ValueError, match="at least one"):
        GroupedBatchSampler([], 1, data_seed=0)


@pytest.mark.parametrize(("size", "world_size"), [(10, 3), (2, 4), (0, 2), (7, 1)])
def test_inference_shards_are_disjoint_and_cover(size, world_size):
    shards = [
        list(InferenceSampler(size, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    flat = [i for s in shards for i in s]
    assert flat == list(range(size))  # disjoint, complete, contiguous, no padding
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [
        len(InferenceSampler(size, rank=r, world_size=world_size)) for r in range(world_size)
    ] == [len(s) for s in shards]

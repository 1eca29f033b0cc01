"""Batch samplers: aspect-ratio grouped training batches sharded across DDP ranks, and a
disjoint sharding of the images for inference.

Training follows mmdetection 2.x ``DistributedGroupSampler``: every batch holds images of one
aspect group only (landscape ``w > h`` or not); each group is shuffled, then padded by cycling
through its own images to a multiple of ``batch_size * world_size``, cut into batches; the batch
order is shuffled and rank ``r`` takes every ``world_size``-th batch starting at ``r``. All ranks
draw the same permutations from ``(data_seed, epoch)``, so their shards are disjoint except for
the padding repeats, and every rank runs the same number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")


class GroupedBatchSampler(Sampler[list[tuple[int, int]]]):
    """Aspect-ratio grouped batches for one rank; yields lists of ``(index, epoch)`` keys.

    ``groups``: ``(N,)`` integer group of each dataset index (e.g.
    :meth:`~.coco.CocoDetection.aspect_groups`). The keys carry the epoch so that the dataset's
    augmentation follows it even in persistent DataLoader workers. Call :meth:`set_epoch`
    before each epoch; the order is a function of ``(data_seed, epoch)`` only.
    """

    def __init__(
        self,
        groups: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        data_seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ):
        super().__init__()
        self.groups = np.asarray(groups, dtype=np.int64).reshape(-1)
        if self.groups.size == 0:
            raise ValueError("GroupedBatchSampler needs at least one index")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if data_seed < 0:
            raise ValueError(f"data_seed must be >= 0, got {data_seed}")
        _check_rank(rank, world_size)
        self.batch_size = batch_size
        self.data_seed = data_seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        chunk = batch_size * world_size
        sizes = np.bincount(self.groups - self.groups.min())
        self._num_batches = int(sum(-(-int(s) // chunk) for s in sizes))  # per rank

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per rank per epoch (the same on every rank)."""
        return self._num_batches

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of dataset indices for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.data_seed, epoch])
        chunk = self.batch_size * self.world_size
        all_batches: list[np.ndarray] = []
        for g in np.unique(self.groups):
            idx = np.flatnonzero(self.groups == g)  # (n_g,)
            if self.shuffle:
                idx = idx[rng.permutation(idx.size)]
            padded = np.resize(idx, -(-idx.size // chunk) * chunk)  # repeats idx cyclically
            all_batches.extend(padded.reshape(-1, self.batch_size))
        order = rng.permutation(len(all_batches)) if self.shuffle else np.arange(len(all_batches))
        return [all_batches[j].tolist() for j in order[self.rank :: self.world_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for batch in self.batches(epoch):
            yield [(i, epoch) for i in batch]


class InferenceSampler(Sampler[int]):
    """Rank ``r``'s contiguous share of ``range(size)``: shards are disjoint, cover every index
    once and differ in length by at most one (no padding duplicates, unlike training)."""

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1):
        super().__init__()
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        _check_rank(rank, world_size)
        self.start = size * rank // world_size
        self.stop = size * (rank + 1) // world_size

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

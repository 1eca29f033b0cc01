"""Batching: the collate function and DataLoaders for training (grouped, sharded) and inference."""

from __future__ import annotations

import functools
from typing import NamedTuple

from torch import Tensor
from torch.utils.data import DataLoader

from .coco import CocoDetection, Target
from .sampler import GroupedBatchSampler, InferenceSampler
from .transforms import ImageMeta, pad_batch


class Batch(NamedTuple):
    """A padded batch.

    ``images``: float32 ``(B, 3, H, W)``, each image at the top-left, zero padded (zero after
    normalisation) to ``H, W`` multiples of the size divisor; ``image_sizes``: int64 ``(B, 2)``
    unpadded ``(h, w)``; ``targets``: per image ``{"boxes": (M_i, 4) xyxy in the unpadded image,
    "labels": (M_i,)}``; ``metas``: per image :class:`ImageMeta`.
    """

    images: Tensor
    image_sizes: Tensor
    targets: list[Target]
    metas: list[ImageMeta]


def collate(samples: list[tuple[Tensor, Target, ImageMeta]], size_divisor: int = 32) -> Batch:
    """Pad ``(image, target, meta)`` samples into a :class:`Batch`."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    images, image_sizes = pad_batch([s[0] for s in samples], size_divisor)
    return Batch(images, image_sizes, [s[1] for s in samples], [s[2] for s in samples])


def build_train_loader(
    dataset: CocoDetection,
    batch_size: int,
    *,
    data_seed: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    persistent_workers: bool = False,
    size_divisor: int = 32,
    pin_memory: bool = False,
) -> DataLoader:
    """Aspect-ratio grouped batches of ``batch_size`` per rank; call
    ``loader.batch_sampler.set_epoch(epoch)`` before each epoch. ``pin_memory`` (for CUDA)
    returns page-locked batches, whose copy to the GPU is queued without a host sync."""
    sampler = GroupedBatchSampler(
        dataset.aspect_groups(),
        batch_size,
        data_seed=data_seed,
        rank=rank,
        world_size=world_size,
    )
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        persistent_workers=persistent_workers and num_workers > 0,
        collate_fn=functools.partial(collate, size_divisor=size_divisor),
        pin_memory=pin_memory,
    )


def build_inference_loader(
    dataset: CocoDetection,
    batch_size: int = 1,
    *,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    size_divisor: int = 32,
) -> DataLoader:
    """Rank ``rank``'s disjoint share of the dataset, in order, ``batch_size`` images a batch
    (the reference tests 1 image per GPU)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=InferenceSampler(len(dataset), rank=rank, world_size=world_size),
        num_workers=num_workers,
        collate_fn=functools.partial(collate, size_divisor=size_divisor),
    )

"""collate and the DataLoaders: padding, worker-count independence, seed separation."""

from __future__ import annotations

import pickle

import torch
from torch.utils.data import DataLoader

from sparse_rcnn.platform.data.coco import CocoDetection
from sparse_rcnn.platform.data.loader import build_inference_loader, build_train_loader, collate
from sparse_rcnn.platform.data.synthetic import split_paths
from sparse_rcnn.platform.data.transforms import ImageMeta


def test_collate_pads_and_keeps_targets_and_metas():
    meta = ImageMeta(1, (10, 10), (50, 70), (5.0, 7.0))
    target = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
    samples = [(torch.ones(3, 50, 70), target, meta), (torch.ones(3, 65, 40), target, meta)]
    images, image_sizes, targets, metas = collate(samples)
    assert images.shape == (2, 3, 96, 96)
    assert image_sizes.tolist() == [[50, 70], [65, 40]]
    assert targets == [target, target] and metas == [meta, meta]
    assert images[0, :, 50:].sum() == 0 and images[1, :, :, 40:].sum() == 0


def _epochs(loader, epochs=(0, 1)):
    """image_id -> (size, flipped, boxes) per epoch, and the image order."""
    out = []
    for epoch in epochs:
        loader.batch_sampler.set_epoch(epoch)
        seen, order = {}, []
        for batch in loader:
            assert batch.images.shape[-1] % 32 == 0 and batch.images.shape[-2] % 32 == 0
            groups = {m.size[1] > m.size[0] for m in batch.metas}
            assert len(groups) == 1  # landscape and portrait never mixed
            for meta, target in zip(batch.metas, batch.targets, strict=True):
                seen[meta.image_id] = (meta.size, meta.flipped, target["boxes"].tolist())
                order.append(meta.image_id)
        out.append((seen, order))
    return out


def test_train_loader_is_independent_of_workers_and_data_seed(synthetic_root):
    ann_file, images = split_paths(synthetic_root, "val")  # the smaller split keeps this fast
    ds = CocoDetection(ann_file, images, train=True, pipeline="multiscale", aug_seed=3)
    assert len(ds) >= 4
    base = _epochs(build_train_loader(ds, 2, data_seed=0, num_workers=0))
    workers = _epochs(
        build_train_loader(ds, 2, data_seed=0, num_workers=2, persistent_workers=True)
    )
    assert workers == base  # same samples, same order, epoch reaches persistent workers
    (e0, order0), (e1, _) = base
    assert e0 != e1  # augmentation changes with the epoch
    reordered = _epochs(build_train_loader(ds, 2, data_seed=1, num_workers=0))
    (r0, rorder0), (r1, _) = reordered
    assert rorder0 != order0  # the data-order seed changes the order ...
    assert r0 == e0 and r1 == e1  # ... and nothing about each image's augmentation
    other_aug = CocoDetection(ann_file, images, train=True, pipeline="multiscale", aug_seed=4)
    [(a0, aorder0)] = _epochs(build_train_loader(other_aug, 2, data_seed=0), epochs=(0,))
    assert aorder0 == order0 and a0 != e0  # and the augmentation seed changes only that


def test_inference_loader_shards_in_order(synthetic_root):
    ann_file, images = split_paths(synthetic_root, "val")
    ds = CocoDetection(ann_file, images, train=False)
    ids = []
    for rank in range(2):
        for batch in build_inference_loader(ds, 1, rank=rank, world_size=2):
            assert batch.images.shape[0] == 1
            ids.extend(m.image_id for m in batch.metas)
    assert ids == ds.image_ids


def test_plain_dataloader_with_workers_and_pickling(hand_coco):
    ann_file, root = hand_coco()
    ds = CocoDetection(ann_file, root, train=True, pipeline="single_scale", aug_seed=1)
    ds.set_epoch(2)
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives
    assert copy[0][2] == ds[0][2] and torch.equal(copy[0][0], ds[0][0])

    def metas(num_workers: int) -> list:
        loader = DataLoader(ds, batch_size=2, collate_fn=collate, num_workers=num_workers)
        return [m for batch in loader for m in batch.metas]

    assert metas(0) == metas(2) == [ds[(i, 2)][2] for i in range(len(ds))]


def test_file_uri_paths(hand_coco):
    ann_file, root = hand_coco()
    ds = CocoDetection(f"file://{ann_file}", f"file://{root}", train=False)
    assert ds.records[0].path == f"file://{root}/001.png"
    assert ds[0][2].orig_size == (60, 80)

"""The tiny preset memorises two synthetic images: the whole model (backbone, FPN, proposals,
dynamic stages, matcher, criterion, post-processing) has to work for this to pass."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.ops import box_iou

from sparse_rcnn.models.config import PRESETS
from sparse_rcnn.models.criterion import SetCriterion, Target, total_loss
from sparse_rcnn.models.detector import SparseRCNN
from sparse_rcnn.models.postprocess import PostProcess
from sparse_rcnn.platform.data.augment import InputSizes
from sparse_rcnn.platform.data.coco import CocoDetection
from sparse_rcnn.platform.data.loader import collate
from sparse_rcnn.platform.data.synthetic import make_synthetic, split_paths


def two_images(tmp_path):
    """Two synthetic training images with 2-4 objects of at least 20 px a side."""
    root = tmp_path / "syn"
    make_synthetic(root, num_images=24, seed=3, val_fraction=0.0, min_size=192, max_size=192)
    ann_file, image_root = split_paths(root, "train")
    data = json.loads(ann_file.read_text())
    by_image: dict[int, list] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    chosen = [
        i
        for i, anns in sorted(by_image.items())
        if 2 <= len(anns) <= 4 and all(not a["iscrowd"] and min(a["bbox"][2:]) >= 20 for a in anns)
    ][:2]
    assert len(chosen) == 2, "the synthetic generator changed; pick other images"
    ds = CocoDetection(ann_file, image_root, train=False, input_sizes=InputSizes(single=(192, 192)))
    return collate([ds[ds.image_ids.index(i)] for i in chosen])


STEPS = 200


@pytest.mark.slow
def test_tiny_overfits_two_synthetic_images(tmp_path):
    torch.manual_seed(0)
    batch = two_images(tmp_path)
    targets = [Target(t["boxes"], t["labels"]) for t in batch.targets]
    cfg = PRESETS["tiny"]
    model, criterion = SparseRCNN(cfg).train(), SetCriterion(cfg)
    num_boxes = sum(len(t.labels) for t in targets)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    # A step decay at the end, as in the reference schedules, settles the boxes.
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[STEPS - 40], gamma=0.1)
    first = None
    for _ in range(STEPS):
        loss = total_loss(criterion(model(batch.images, batch.image_sizes), targets, num_boxes))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    assert loss.item() <= 0.2 * first, (first, loss.item())

    model.eval()
    with torch.no_grad():
        dets = PostProcess(cfg.num_proposals)(model(batch.images, batch.image_sizes))
    for det, tgt in zip(dets, targets, strict=True):
        k = 2 * len(tgt.labels)  # look only at the image's top 2 x (number of objects)
        boxes, labels = det.boxes[:k], det.labels[:k]
        for box, label in zip(tgt.boxes, tgt.labels, strict=True):
            iou = box_iou(box[None], boxes)[0]
            best = iou[labels == label].max().item() if (labels == label).any() else 0.0
            assert best > 0.7, (box.tolist(), label.item(), best)

"""Distributed evaluation: each rank runs its disjoint share of the validation images (no
padding duplicates), detections are gathered on rank 0, which computes COCO AP."""

from __future__ import annotations

import numpy as np
import torch

from sparse_rcnn.models.postprocess import PostProcess
from sparse_rcnn.platform.data.coco import CocoDetection
from sparse_rcnn.platform.data.loader import build_inference_loader
from sparse_rcnn.platform.engine.distributed import DistContext
from sparse_rcnn.platform.engine.inference import to_detections
from sparse_rcnn.platform.engine.train_step import autocast_for
from sparse_rcnn.platform.evaluation.coco_eval import CocoEvalResult, evaluate
from sparse_rcnn.platform.evaluation.detections import Detections


@torch.no_grad()
def predict_dataset(
    model: torch.nn.Module,
    dataset: CocoDetection,
    dist: DistContext,
    precision: str = "fp32",
    num_workers: int = 0,
) -> Detections | None:
    """All detections of ``dataset`` on rank 0 (None on other ranks). ``model`` is the bare
    :class:`SparseRCNN` (not the DDP wrapper: inference needs no gradient sync)."""
    cfg = model.cfg
    was_training = model.training
    model.eval()
    post = PostProcess(cfg.detections_per_image)
    cat_ids = np.asarray(dataset.category_map.category_ids, dtype=np.int64)
    loader = build_inference_loader(
        dataset, 1, rank=dist.rank, world_size=dist.world_size, num_workers=num_workers,
        size_divisor=cfg.size_divisor,
    )  # fmt: skip
    parts = []
    for batch in loader:
        with autocast_for(dist.device, precision):
            out = model(batch.images.to(dist.device), batch.image_sizes)
        parts.append(to_detections(post(out), batch.metas, cat_ids, cfg))
    model.train(was_training)
    gathered = dist.gather(Detections.concat(parts))
    return Detections.concat(gathered) if gathered is not None else None


def evaluate_dataset(
    model: torch.nn.Module,
    dataset: CocoDetection,
    dist: DistContext,
    precision: str = "fp32",
    num_workers: int = 0,
    max_dets: tuple[int, int, int] = (1, 10, 100),
) -> tuple[CocoEvalResult, Detections] | None:
    """COCO box metrics of ``model`` on ``dataset`` (rank 0; None elsewhere)."""
    dets = predict_dataset(model, dataset, dist, precision, num_workers)
    if dets is None:
        return None
    return evaluate(dataset.ann_file, dets, max_dets), dets

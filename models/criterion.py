"""Set-prediction losses of Sparse R-CNN with deep supervision (mmdetection DIIHead.loss).

For every stage, independently: Hungarian matching per image, then
- loss_cls: sigmoid focal loss (alpha 0.25, gamma 2) summed over all proposals x classes,
- loss_bbox: L1 between matched predicted and GT boxes, both divided by the image's (w, h, w, h),
- loss_iou: GIoU loss 1 - GIoU in absolute pixels,
each summed and divided by ``num_boxes``, then multiplied by its weight (2, 5, 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse_rcnn.models.config import ModelConfig
from sparse_rcnn.models.detector import DetectorOutput
from sparse_rcnn.models.matcher import HungarianMatcher
from sparse_rcnn.models.vision import torchvision


@dataclass
class Target:
    """One image's ground truth in the input frame: ``boxes`` ``(M, 4)`` absolute xyxy (float),
    ``labels`` ``(M,)`` int64 contiguous 0..K-1. Crowd boxes are not targets."""

    boxes: Tensor
    labels: Tensor


def loss_names(num_stages: int) -> list[str]:
    """The keys of the loss dict: ``stage{i}.loss_cls`` ... (mmdetection 3.x calls them
    ``s{i}.loss_cls``; "stage" keeps them apart from the ``s0`` of study trial keys)."""
    terms = ("loss_cls", "loss_bbox", "loss_iou")
    return [f"stage{i}.{t}" for i in range(num_stages) for t in terms]


class SetCriterion:
    """Computes the weighted loss terms of every stage.

    ``num_boxes`` normalises every term: the number of ground-truth boxes in the batch, averaged
    over workers by the caller (the engine all-reduces it; this module has no distributed code).
    It is clamped to at least 1, as in the official repository; mmdetection divides by the raw
    average (plus float eps in 3.x), which differs only for a batch without any ground truth.
    """

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.matcher = HungarianMatcher(
            cfg.class_weight, cfg.l1_weight, cfg.giou_weight, cfg.focal_alpha, cfg.focal_gamma
        )

    def __call__(
        self, outputs: DetectorOutput, targets: list[Target], num_boxes: float
    ) -> dict[str, Tensor]:
        """Returns weighted losses ``stage{i}.loss_cls|loss_bbox|loss_iou`` (scalars with grad)
        and ``stage{i}.pos_acc`` (percent of matched proposals whose top class is right, no
        grad)."""
        norm = max(float(num_boxes), 1.0)
        losses: dict[str, Tensor] = {}
        for i, stage in enumerate(outputs.stages):
            terms = self._stage_loss(stage, outputs.whwh, targets, norm)
            losses.update({f"stage{i}.{k}": v for k, v in terms})
        return losses

    def _stage_loss(self, stage, whwh: Tensor, targets: list[Target], norm: float):
        cfg = self.cfg
        logits, boxes = stage.logits, stage.boxes  # (B, N, K), (B, N, 4)
        b, n, k = logits.shape
        cls_target = torch.zeros_like(logits)
        pos_pred, pos_gt, pos_whwh, pos_logits, pos_labels = [], [], [], [], []
        for j, tgt in enumerate(targets):
            pi, gi = self.matcher(
                logits[j].detach(), boxes[j].detach(), tgt.labels, tgt.boxes, whwh[j]
            )
            cls_target[j, pi, tgt.labels[gi]] = 1.0
            pos_pred.append(boxes[j, pi])
            pos_gt.append(tgt.boxes[gi].to(boxes.dtype))
            pos_whwh.append(whwh[j].expand(len(pi), 4))
            pos_logits.append(logits[j, pi].detach())
            pos_labels.append(tgt.labels[gi])
        pred, gt, scale = torch.cat(pos_pred), torch.cat(pos_gt), torch.cat(pos_whwh)
        loss_cls = torchvision.ops.sigmoid_focal_loss(
            logits, cls_target, cfg.focal_alpha, cfg.focal_gamma, reduction="sum"
        )
        yield "loss_cls", cfg.class_weight * loss_cls / norm
        if pred.shape[0] > 0:
            l1 = (pred / scale - gt / scale).abs().sum()
            giou = torchvision.ops.generalized_box_iou_loss(pred, gt, reduction="sum")
        else:
            # Graph-connected zeros, so every parameter still gets a (zero) gradient.
            l1 = giou = boxes.sum() * 0.0
        yield "loss_bbox", cfg.l1_weight * l1 / norm
        yield "loss_iou", cfg.giou_weight * giou / norm
        if pred.shape[0] > 0:
            acc = (torch.cat(pos_logits).argmax(-1) == torch.cat(pos_labels)).float().mean() * 100
        else:
            acc = logits.new_zeros(())
        yield "pos_acc", acc.detach()


def total_loss(losses: dict[str, Tensor]) -> Tensor:
    """Sum of the loss terms (keys containing ``loss``), stage weights 1."""
    return sum(v for key, v in losses.items() if ".loss_" in key)

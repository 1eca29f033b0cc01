"""Hungarian matching between one image's proposals and its ground truth (mmdetection's
HungarianAssigner with FocalLossCost, BBoxL1Cost and IoUCost(giou))."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from sparse_rcnn.models.vision import torchvision


class NonFiniteCostError(FloatingPointError):
    """The matching cost contains NaN or Inf: the predictions have diverged."""


def focal_cost(logits: Tensor, gt_labels: Tensor, alpha: float, gamma: float) -> Tensor:
    """Focal classification cost ``(N, M)`` of assigning each proposal to each GT's class.

    p = sigmoid(logit[:, c_j]); cost = alpha (1-p)^gamma (-log(p + eps))
    - (1 - alpha) p^gamma (-log(1 - p + eps)), eps = 1e-12.
    """
    p = logits.sigmoid()
    eps = 1e-12
    neg = -(1 - p + eps).log() * (1 - alpha) * p.pow(gamma)
    pos = -(p + eps).log() * alpha * (1 - p).pow(gamma)
    return pos[:, gt_labels] - neg[:, gt_labels]


class HungarianMatcher:
    """One-to-one assignment minimising

    cost = class_weight * focal_cost + l1_weight * L1(pred / whwh, gt / whwh)
    + giou_weight * (-GIoU(pred, gt)).

    Boxes are absolute xyxy in the (resized, unpadded) input image; ``whwh`` is that image's
    (w, h, w, h). Solved with scipy's ``linear_sum_assignment`` on CPU.
    """

    def __init__(
        self,
        class_weight: float = 2.0,
        l1_weight: float = 5.0,
        giou_weight: float = 2.0,
        alpha: float = 0.25,
        gamma: float = 2.0,
    ):
        self.class_weight = class_weight
        self.l1_weight = l1_weight
        self.giou_weight = giou_weight
        self.alpha = alpha
        self.gamma = gamma

    def cost(
        self, logits: Tensor, boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor, whwh: Tensor
    ) -> Tensor:
        """logits ``(N, K)``, boxes ``(N, 4)``, gt_labels ``(M,)``, gt_boxes ``(M, 4)``,
        whwh ``(4,)`` -> cost ``(N, M)``."""
        cls = focal_cost(logits, gt_labels, self.alpha, self.gamma)
        l1 = torch.cdist(boxes / whwh, gt_boxes / whwh, p=1)
        giou = -torchvision.ops.generalized_box_iou(boxes, gt_boxes)
        return self.class_weight * cls + self.l1_weight * l1 + self.giou_weight * giou

    @torch.no_grad()
    def __call__(
        self, logits: Tensor, boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor, whwh: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Returns ``(pred_idx, gt_idx)``, int64 of equal length min(N, M) (0 when there is no
        ground truth): proposal ``pred_idx[k]`` is matched to GT ``gt_idx[k]``; every other
        proposal is background. With more GT than proposals, the surplus GT stay unmatched."""
        n, m = logits.shape[0], gt_labels.shape[0]
        if m == 0 or n == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=logits.device)
            return empty, empty
        cost = self.cost(logits.float(), boxes.float(), gt_labels, gt_boxes.float(), whwh.float())
        # One device-to-host copy (scipy solves on the CPU); the finite check reads that copy
        # instead of synchronising a second time.
        cost_np = cost.cpu().numpy()  # (N, M)
        if not np.isfinite(cost_np).all():
            raise NonFiniteCostError(
                "matching cost contains NaN/Inf "
                f"(logits finite: {bool(torch.isfinite(logits).all())}, "
                f"boxes finite: {bool(torch.isfinite(boxes).all())}); training has diverged"
            )
        rows, cols = linear_sum_assignment(cost_np)
        dev = logits.device
        return torch.as_tensor(rows, device=dev), torch.as_tensor(cols, device=dev)

"""Multi-level RoIAlign (mmdetection SingleRoIExtractor), built on torchvision.ops.roi_align.

torchvision's MultiScaleRoIAlign is not used because it infers level scales from feature/image
shape ratios and rounds its level mapping differently at the boundaries; this reproduces mmdet's
``floor(log2(sqrt(wh) / finest_scale + 1e-6))`` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from sparse_rcnn.models.vision import torchvision


def map_roi_levels(rois: Tensor, num_levels: int, finest_scale: float = 56.0) -> Tensor:
    """``(K, 5)`` rois (batch_index, x1, y1, x2, y2) -> ``(K,)`` level index in 0..num_levels-1.

    s = sqrt(w * h) in input pixels; level = clamp(floor(log2(s / finest_scale + 1e-6))), i.e.
    s < 112 -> 0 (P2), < 224 -> 1, < 448 -> 2, else 3.
    """
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    return levels.clamp(min=0, max=num_levels - 1).long()


def multilevel_roi_align(
    features: list[Tensor],
    rois: Tensor,
    strides: tuple[int, ...],
    output_size: int = 7,
    sampling_ratio: int = 2,
    finest_scale: float = 56.0,
) -> Tensor:
    """Pool each RoI from its pyramid level.

    features: per level ``(B, C, H_l, W_l)``; rois ``(K, 5)`` (batch_index, xyxy in input pixels,
    not clipped). Returns ``(K, C, output_size, output_size)`` in the order of ``rois``.
    RoIAlign is ``aligned=True`` (half-pixel offset), average pooling.
    """
    levels = map_roi_levels(rois, len(features), finest_scale)
    out = features[0].new_zeros((rois.shape[0], features[0].shape[1], output_size, output_size))
    for lvl, (feat, stride) in enumerate(zip(features, strides, strict=True)):
        idx = torch.nonzero(levels == lvl, as_tuple=True)[0]
        if idx.numel() == 0:
            # Keeps every level's parameters in the graph so DDP sees a gradient for each
            # (mmdetection does the same).
            out = out + feat.sum() * 0.0
            continue
        pooled = torchvision.ops.roi_align(
            feat,
            rois[idx],
            output_size,
            spatial_scale=1.0 / stride,
            sampling_ratio=sampling_ratio,
            aligned=True,
        )
        out = out.index_put((idx,), pooled)
    return out

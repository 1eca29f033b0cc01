"""Box conversions and the delta coder. The one internal convention is absolute-pixel xyxy;
normalised cxcywh appears only for the learned proposal table.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sparse_rcnn.models.vision import torchvision

# mmdetection DeltaXYWHBBoxCoder: wh_ratio_clip = 16 / 1000.
DELTA_CLAMP = abs(math.log(16 / 1000))


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(..., 4)`` (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    return torchvision.ops.box_convert(boxes, "cxcywh", "xyxy")


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``(..., 4)`` (x1, y1, x2, y2) -> COCO (x, y, w, h), no +1."""
    return torchvision.ops.box_convert(boxes, "xyxy", "xywh")


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(..., 4)`` COCO (x, y, w, h) -> (x1, y1, x2, y2), no +1."""
    return torchvision.ops.box_convert(boxes, "xywh", "xyxy")


def decode_deltas(
    deltas: Tensor,
    boxes: Tensor,
    stds: tuple[float, float, float, float] = (0.5, 0.5, 1.0, 1.0),
    clamp: float = DELTA_CLAMP,
) -> Tensor:
    """Apply ``(K, 4)`` deltas (dx, dy, dw, dh) to ``(K, 4)`` xyxy prior boxes (mmdetection's
    DeltaXYWHBBoxCoder with zero means, no border clipping).

    gx = px + pw * dx * sx, gy = py + ph * dy * sy, gw = pw * exp(clamp(dw * sw)),
    gh = ph * exp(clamp(dh * sh)); returns ``(K, 4)`` xyxy in the priors' frame.
    """
    d = deltas * deltas.new_tensor(stds)
    dx, dy = d[:, 0], d[:, 1]
    dw, dh = d[:, 2].clamp(-clamp, clamp), d[:, 3].clamp(-clamp, clamp)
    pw = boxes[:, 2] - boxes[:, 0]
    ph = boxes[:, 3] - boxes[:, 1]
    px = (boxes[:, 0] + boxes[:, 2]) * 0.5
    py = (boxes[:, 1] + boxes[:, 3]) * 0.5
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = px + pw * dx, py + ph * dy
    return torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], dim=-1)


def image_whwh(image_sizes: Tensor) -> Tensor:
    """``(B, 2)`` (h, w) unpadded sizes -> ``(B, 4)`` float (w, h, w, h)."""
    hw = image_sizes.to(torch.float32)
    return torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], dim=-1)

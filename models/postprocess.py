"""Inference post-processing: top-k over proposals x classes, no NMS (mmdetection)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sparse_rcnn.models.detector import DetectorOutput


@dataclass
class ImageDetections:
    """One image's detections in the input frame (resized, unpadded): ``boxes`` ``(k, 4)``
    absolute xyxy, ``scores`` ``(k,)`` sorted descending, ``labels`` ``(k,)`` int64 0..K-1."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor


class PostProcess:
    """Uses only the last stage: scores = sigmoid(logits) ``(N, K)``, flattened to N*K
    candidates, top-k (k = ``max_per_image``), label = index mod K, box = proposal index div K.
    One box may appear with several labels. Mapping back to original-image pixels (and optional
    clipping) is the caller's job, which knows each image's resize factors."""

    def __init__(self, max_per_image: int):
        self.max_per_image = max_per_image

    @torch.no_grad()
    def __call__(self, outputs: DetectorOutput) -> list[ImageDetections]:
        logits, boxes = outputs.final.logits, outputs.final.boxes  # (B, N, K), (B, N, 4)
        num_classes = logits.shape[-1]
        k = min(self.max_per_image, logits.shape[1] * num_classes)
        scores, idx = logits.sigmoid().flatten(1).topk(k, dim=1, sorted=True)  # (B, k)
        labels = idx % num_classes
        picked = torch.gather(boxes, 1, (idx // num_classes)[..., None].expand(-1, -1, 4))
        return [ImageDetections(picked[i], scores[i], labels[i]) for i in range(logits.shape[0])]

"""Learned proposals (mmdetection's EmbeddingRPNHead; key prefix ``rpn_head.``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sparse_rcnn.models.box_ops import cxcywh_to_xyxy


class LearnedProposals(nn.Module):
    """``num_proposals`` boxes stored as normalised (cx, cy, w, h), initialised to the whole image
    (0.5, 0.5, 1, 1), and ``num_proposals`` feature vectors (standard-normal init).

    No loss of its own; the boxes receive gradient only through stage-0 box decoding.
    """

    def __init__(self, num_proposals: int, hidden_dim: int):
        super().__init__()
        self.init_proposal_bboxes = nn.Embedding(num_proposals, 4)
        self.init_proposal_features = nn.Embedding(num_proposals, hidden_dim)
        with torch.no_grad():
            self.init_proposal_bboxes.weight[:, :2] = 0.5
            self.init_proposal_bboxes.weight[:, 2:] = 1.0

    def forward(self, whwh: Tensor) -> tuple[Tensor, Tensor]:
        """``whwh`` ``(B, 4)`` unpadded (w, h, w, h) per image -> boxes ``(B, N, 4)`` absolute xyxy
        and features ``(B, N, C)``."""
        boxes = cxcywh_to_xyxy(self.init_proposal_bboxes.weight)  # (N, 4) normalised
        boxes = boxes[None] * whwh[:, None, :]  # (B, N, 4)
        feats = self.init_proposal_features.weight[None].expand(whwh.shape[0], -1, -1)
        return boxes, feats

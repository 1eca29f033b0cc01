"""Sparse R-CNN (Sun et al., arXiv 2011.12450) as mmdetection implements it.

Reads top to bottom: backbone -> FPN -> learned proposals -> ``num_stages`` dynamic stages,
each pooling RoI features for the current boxes and refining boxes and object features.
Module names equal mmdetection's checkpoint keys (``backbone``, ``neck``, ``rpn_head``,
``roi_head.bbox_head.{i}``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sparse_rcnn.models.backbone import FPN, ResNet
from sparse_rcnn.models.box_ops import decode_deltas, image_whwh
from sparse_rcnn.models.config import ModelConfig
from sparse_rcnn.models.dii_head import DIIHead
from sparse_rcnn.models.proposals import LearnedProposals
from sparse_rcnn.models.roi_extractor import multilevel_roi_align

FPN_STRIDES = (4, 8, 16, 32)


@dataclass
class StageOutput:
    """One stage's predictions for a batch: ``logits`` ``(B, N, K)`` (sigmoid classes, no
    background) and ``boxes`` ``(B, N, 4)`` absolute xyxy in the padded-batch input frame."""

    logits: Tensor
    boxes: Tensor


@dataclass
class DetectorOutput:
    """What the detector returns in train and eval mode alike; the criterion and the
    post-processor consume it. ``whwh`` ``(B, 4)`` is each image's unpadded (w, h, w, h)."""

    stages: list[StageOutput]
    whwh: Tensor

    @property
    def final(self) -> StageOutput:
        return self.stages[-1]


class _RoIHead(nn.Module):
    """Holds the stage heads under ``bbox_head`` (mmdetection's SparseRoIHead key layout)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.bbox_head = nn.ModuleList(
            DIIHead(
                num_classes=cfg.num_classes,
                hidden_dim=cfg.hidden_dim,
                num_heads=cfg.num_heads,
                ffn_dim=cfg.ffn_dim,
                dynamic_channels=cfg.dynamic_channels,
                pooler_size=cfg.pooler_size,
                num_cls_fcs=cfg.num_cls_fcs,
                num_reg_fcs=cfg.num_reg_fcs,
            )
            for _ in range(cfg.num_stages)
        )


class SparseRCNN(nn.Module):
    """The detector. Input: a padded batch ``images`` ``(B, 3, H, W)`` (normalised RGB) and
    ``image_sizes`` ``(B, 2)`` int of each image's unpadded (h, w). Output: ``DetectorOutput``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet(cfg.backbone_depth, cfg.frozen_stages, cfg.norm_eval)
        self.neck = FPN(self.backbone.out_channels, cfg.hidden_dim)
        self.rpn_head = LearnedProposals(cfg.num_proposals, cfg.hidden_dim)
        self.roi_head = _RoIHead(cfg)

    def forward(self, images: Tensor, image_sizes: Tensor) -> DetectorOutput:
        cfg = self.cfg
        features = self.neck(self.backbone(images))  # 4 x (B, C, H/s, W/s)
        whwh = image_whwh(image_sizes).to(images.device)  # (B, 4)
        boxes, obj_feat = self.rpn_head(whwh)  # (B, N, 4), (B, N, C)
        b, n = boxes.shape[:2]
        batch_index = torch.arange(b, device=images.device, dtype=boxes.dtype)
        batch_index = batch_index.repeat_interleave(n)[:, None]  # (B*N, 1)
        stages: list[StageOutput] = []
        for head in self.roi_head.bbox_head:
            rois = torch.cat([batch_index, boxes.reshape(b * n, 4)], dim=1)  # (B*N, 5)
            roi_feat = multilevel_roi_align(
                features,
                rois,
                FPN_STRIDES,
                cfg.pooler_size,
                cfg.sampling_ratio,
                cfg.finest_scale,
            )  # (B*N, C, S, S)
            logits, deltas, obj_feat = head(roi_feat, obj_feat)
            new_boxes = decode_deltas(deltas.reshape(b * n, 4), rois[:, 1:], cfg.box_stds)
            new_boxes = new_boxes.view(b, n, 4)
            stages.append(StageOutput(logits, new_boxes))
            # Boxes are detached between stages, object features are not.
            boxes = new_boxes.detach()
        return DetectorOutput(stages, whwh)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

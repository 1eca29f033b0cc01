"""Typed model configuration and the named presets.

Defaults are mmdetection's ``sparse_rcnn_r50_fpn_1x_coco``. The five reference presets are
named after the rows of the mmdetection results table; ``tiny`` is a CPU-sized configuration of
the same architecture (smaller backbone, width, image size, proposals and stages).
Training-pipeline and schedule differences between the presets (multi-scale, crop, 3x) belong to
the job spec; the model config records only what the weights and inference depend on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Architecture, loss and inference settings of a Sparse R-CNN detector."""

    backbone_depth: int = 50  # ResNet depth: 10 (CPU demos), 18, 34, 50 or 101
    frozen_stages: int = 1  # -1 none, 0 stem, k: stem + layer1..k (mmdetection semantics)
    norm_eval: bool = True  # BatchNorm running statistics frozen
    hidden_dim: int = 256  # FPN channels = object feature width
    num_proposals: int = 100
    num_stages: int = 6
    num_classes: int = 80
    num_heads: int = 8
    ffn_dim: int = 2048
    dynamic_channels: int = 64
    pooler_size: int = 7
    sampling_ratio: int = 2
    finest_scale: float = 56.0
    num_cls_fcs: int = 1
    num_reg_fcs: int = 3
    box_stds: tuple[float, float, float, float] = (0.5, 0.5, 1.0, 1.0)
    # Hungarian matching costs and loss weights (identical weights in both).
    class_weight: float = 2.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # Inference: top-k over proposals x classes; mmdetection keeps k = num_proposals and does not
    # clip boxes to the image (the official repo clips).
    max_per_image: int | None = None
    clip_boxes: bool = False
    # Test-time input: keep-ratio resize to (long, short), pad to a multiple of size_divisor.
    test_scale: tuple[int, int] = (1333, 800)
    size_divisor: int = 32

    def __post_init__(self) -> None:
        checks = {
            "backbone_depth": self.backbone_depth in (10, 18, 34, 50, 101),
            "num_proposals": self.num_proposals >= 1,
            "num_stages": self.num_stages >= 1,
            "num_classes": self.num_classes >= 1,
            "hidden_dim": self.hidden_dim % self.num_heads == 0,
            "frozen_stages": -1 <= self.frozen_stages <= 4,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid model config field(s) {bad}: {self}")

    @property
    def detections_per_image(self) -> int:
        return self.max_per_image or self.num_proposals

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes``; unknown field names raise ``TypeError`` naming them."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown model config field(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise TypeError(f"unknown model config field(s): {sorted(unknown)}")
        tuples = {"box_stds", "test_scale"}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in data.items()})


_R50 = ModelConfig()
_R101 = ModelConfig(backbone_depth=101)

# The one registry of model presets: name -> config (reference box AP in the comment).
PRESETS: dict[str, ModelConfig] = {
    "r50_fpn_1x": _R50,  # 37.9
    "r50_fpn_ms_3x": _R50,  # 42.8
    "r50_fpn_300_crop_ms_3x": _R50.replace(num_proposals=300),  # 45.0
    "r101_fpn_ms_3x": _R101,  # 44.2
    "r101_fpn_300_crop_ms_3x": _R101.replace(num_proposals=300),  # 46.2
    # CPU scale: ResNet-18 trained from scratch (no frozen stem, BN statistics update),
    # narrower head, 3 stages, small images.
    "tiny": ModelConfig(
        backbone_depth=18,
        frozen_stages=-1,
        norm_eval=False,
        hidden_dim=64,
        num_proposals=32,
        num_stages=3,
        num_heads=4,
        ffn_dim=256,
        dynamic_channels=16,
        test_scale=(533, 320),  # the reference sizes x 0.4 (InputSizes.scaled(0.4))
    ),
}


def preset(name: str) -> ModelConfig:
    """The named preset; an unknown name raises ``KeyError`` listing the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}") from None

"""COCO's 80 detection categories and the contiguous label <-> category id mapping.

The model predicts contiguous labels 0..79 in COCO category order (mmdetection's CLASSES order);
COCO result files and annotation files use the sparse category ids 1..90.
"""

from __future__ import annotations

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

# Missing ids in COCO: 12, 26, 29, 30, 45, 66, 68, 69, 71, 83.
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(
    i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
)

assert len(COCO_CLASSES) == len(COCO_CATEGORY_IDS) == 80


class CategoryMap:
    """Bijection between contiguous labels ``0..K-1`` and a dataset's category ids.

    ``category_ids`` are taken in the given order (for COCO: sorted ids, which is
    mmdetection's order). Unknown ids and labels raise ``KeyError`` naming the value.
    """

    def __init__(self, category_ids: list[int] | tuple[int, ...], names: list[str] | None = None):
        ids = [int(c) for c in category_ids]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate category ids: {ids}")
        self.category_ids: tuple[int, ...] = tuple(ids)
        self.names: tuple[str, ...] = tuple(names) if names else tuple(str(c) for c in ids)
        self._label_of = {c: i for i, c in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.category_ids)

    def label(self, category_id: int) -> int:
        try:
            return self._label_of[int(category_id)]
        except KeyError:
            raise KeyError(f"category id {category_id} is not one of {self.category_ids}") from None

    def category_id(self, label: int) -> int:
        if not 0 <= int(label) < len(self.category_ids):
            raise KeyError(f"label {label} is outside 0..{len(self.category_ids) - 1}")
        return self.category_ids[int(label)]

    @classmethod
    def coco(cls) -> CategoryMap:
        return cls(COCO_CATEGORY_IDS, list(COCO_CLASSES))

"""Small hand-made COCO datasets on disk for the data tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_png


def write_png(path: Path, height: int, width: int, value: int = 128) -> None:
    image = torch.full((3, height, width), value, dtype=torch.uint8)
    path.write_bytes(encode_png(image).numpy().tobytes())


def ann(aid: int, image_id: int, bbox: list[float], category_id: int = 1, **extra) -> dict:
    area = extra.pop("area", bbox[2] * bbox[3])
    return {"id": aid, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": area, "iscrowd": 0, **extra}  # fmt: skip


# id -> (height, width); see HAND_ANNOTATIONS for what each image tests.
HAND_IMAGES = {1: (60, 80), 2: (80, 60), 3: (60, 80), 4: (20, 100), 5: (48, 64), 6: (64, 48)}
HAND_ANNOTATIONS = [
    ann(1, 1, [10, 10, 20, 30]),  # kept: label 0, xyxy [10, 10, 30, 40]
    ann(2, 1, [0, 0, 50, 50], iscrowd=1),  # crowd
    ann(3, 1, [5, 5, 0.5, 10]),  # invalid: w < 1
    ann(4, 1, [5, 5, 10, 10], area=0),  # invalid: area 0
    ann(5, 1, [100, 100, 10, 10]),  # invalid: outside the 80x60 image
    ann(6, 1, [30, 20, 40, 30], category_id=90),  # kept: toothbrush, label 79
    ann(7, 2, [5, 6, 30, 40], category_id=3),  # kept: car, label 2
    # image 3: no annotations -> filtered in training
    ann(8, 4, [1, 1, 10, 10]),  # image 4 is 20 px high -> filtered in training
    ann(9, 5, [0, 0, 30, 30], iscrowd=1),  # image 5: only a crowd box -> kept, zero boxes
    ann(10, 6, [2, 2, 10, 10], ignore=True),  # image 6: mmdetection's ignore flag
    ann(11, 6, [4, 8, 20, 30], category_id=1),  # kept
]


@pytest.fixture
def hand_coco(tmp_path: Path):
    """Factory: writes the hand-made dataset (optionally edited) and returns
    ``(ann_file, image_root)``."""

    def make(annotations: list[dict] | None = None, images: dict | None = None):
        root = tmp_path / "hand"
        (root / "images").mkdir(parents=True, exist_ok=True)
        images = HAND_IMAGES if images is None else images
        for iid, (h, w) in images.items():
            write_png(root / "images" / f"{iid:03d}.png", h, w, value=10 * iid)
        data = {
            "images": [
                {"id": i, "file_name": f"{i:03d}.png", "height": h, "width": w}
                for i, (h, w) in images.items()
            ],  # fmt: skip
            "annotations": HAND_ANNOTATIONS if annotations is None else annotations,
            "categories": [{"id": c, "name": str(c)} for c in (1, 3, 90)],
        }
        ann_file = root / "instances.json"
        ann_file.write_text(json.dumps(data))
        return ann_file, root / "images"

    return make


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A 24-image synthetic dataset, written once per session."""
    from sparse_rcnn.platform.data.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root, 24, seed=7, val_fraction=0.25)
    return root

"""Evaluation pictures for the run's tracking: the detection grid at every evaluation (step =
epoch), AP per category and precision-recall curves after the last; nothing for a logger that
takes no pictures."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_rcnn.platform.data.augment import InputSizes
from sparse_rcnn.platform.data.coco import CocoDetection
from sparse_rcnn.platform.engine.eval_pictures import (
    GRID_IMAGES,
    PictureLogger,
    image_boxes,
    log_evaluation_pictures,
)
from sparse_rcnn.platform.engine.local_reporter import LocalReporter
from sparse_rcnn.platform.engine.loop import NullLogger, run_training
from sparse_rcnn.platform.evaluation.coco_eval import evaluate
from sparse_rcnn.platform.evaluation.detections import Detections
from sparse_rcnn.platform.tracking import names


class PictureRecorder(NullLogger):
    def __init__(self):
        self.images: list[tuple[str, int, tuple[int, ...]]] = []
        self.pngs: dict[str, bytes] = {}

    def log_image(self, image, key, step):
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        self.images.append((key, step, image.shape))

    def log_png(self, data, artifact_file):
        self.pngs[artifact_file] = data


@pytest.fixture(scope="module")
def val_set(small_data):
    return CocoDetection(small_data.val_ann, small_data.val_images, train=False,
                         input_sizes=InputSizes.scaled(0.2))  # fmt: skip


def _gt_as_detections(ds: CocoDetection) -> Detections:
    """Every ground-truth box as a detection of score 0.9 (xywh), plus one 0.1 miss per image."""
    rows = []
    for r in ds.records:
        for box, label in zip(r.boxes, r.labels, strict=True):
            x0, y0, x1, y1 = box.tolist()
            cat = ds.category_map.category_id(int(label))
            rows.append({"image_id": r.image_id, "category_id": cat, "score": 0.9,
                         "bbox": [x0, y0, x1 - x0, y1 - y0]})  # fmt: skip
        rows.append({"image_id": r.image_id, "category_id": ds.category_map.category_ids[0],
                     "score": 0.1, "bbox": [0, 0, 3, 3]})  # fmt: skip
    return Detections.from_coco_results(rows)


def test_grid_boxes_are_the_images_detections_in_xyxy(val_set):
    dets = _gt_as_detections(val_set)
    preds, gts = image_boxes(val_set, dets, count=2)
    r = val_set.records[0]
    np.testing.assert_allclose(gts[0].boxes, r.boxes)
    assert preds[0].image.shape == (r.height, r.width, 3)
    np.testing.assert_allclose(preds[0].boxes[: len(r.boxes)], r.boxes, atol=1e-4)
    assert sorted(preds[0].scores.tolist()) == sorted([0.1] + [0.9] * len(r.boxes))


def test_pictures_every_evaluation_and_curves_at_the_end(val_set):
    dets = _gt_as_detections(val_set)
    result = evaluate(val_set.ann_file, dets)
    rec = PictureRecorder()
    assert isinstance(rec, PictureLogger) and not isinstance(NullLogger(), PictureLogger)
    log_evaluation_pictures(rec, val_set, result, dets, epoch=1, last=False)
    assert [(k, s) for k, s, _ in rec.images] == [(names.IMAGE_DETECTIONS, 1)]
    assert rec.pngs == {}
    log_evaluation_pictures(rec, val_set, result, dets, epoch=2, last=True)
    assert [(k, s) for k, s, _ in rec.images][-1] == (names.IMAGE_DETECTIONS, 2)
    assert sorted(rec.pngs) == ["evaluation/ap_per_category.png", "evaluation/pr_curves.png"]
    assert all(v[:4] == b"\x89PNG" for v in rec.pngs.values())
    # A grid row per image, up to GRID_IMAGES: taller with more images.
    assert rec.images[0][2][0] > 200 * min(GRID_IMAGES, len(val_set.records))


@pytest.mark.slow
def test_training_logs_a_grid_per_evaluation(tmp_path, make_spec, small_data):
    spec = make_spec(**{"schedule.epochs": 2, "eval_interval": 1})
    rec = PictureRecorder()
    run_training(spec, small_data, LocalReporter(tmp_path), rec)
    assert [(k, s) for k, s, _ in rec.images] == [
        (names.IMAGE_DETECTIONS, 1), (names.IMAGE_DETECTIONS, 2),
    ]  # fmt: skip
    assert sorted(rec.pngs) == ["evaluation/ap_per_category.png", "evaluation/pr_curves.png"]

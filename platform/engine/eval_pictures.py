"""Pictures of an evaluation for the run's tracking (rank 0): at every evaluation a grid of the
first validation images with predicted boxes beside the ground truth, logged as an image at
step = epoch (the MLflow UI's image view steps through epochs); after the last, AP per category
and precision-recall curves at IoU 0.5 and 0.75 as PNG artifacts.

Drawing is done by ``sparse_rcnn.dashboards.run_plots`` (pure functions); this module gathers
their inputs from the dataset, the detections and the evaluation. A logger that cannot take
pictures (:class:`PictureLogger` not implemented, e.g. ``NullLogger``) gets none and nothing is
drawn.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from sparse_rcnn.models.box_ops import xywh_to_xyxy
from sparse_rcnn.platform.data.coco import CocoDetection
from sparse_rcnn.platform.data.image_io import load_image
from sparse_rcnn.platform.evaluation.coco_eval import CocoEvalResult, prepare
from sparse_rcnn.platform.evaluation.detections import Detections
from sparse_rcnn.platform.evaluation.pr_curves import precision_recall
from sparse_rcnn.platform.tracking import names

GRID_IMAGES = 4
SCORE_THRESHOLD = 0.3
PR_IOUS = (0.5, 0.75)


@runtime_checkable
class PictureLogger(Protocol):
    def log_image(self, image: np.ndarray, key: str, step: int) -> None:
        """(H, W, 3) uint8 image under ``key`` at ``step``."""

    def log_png(self, data: bytes, artifact_file: str) -> None:
        """PNG bytes as the artifact ``artifact_file``."""


def image_boxes(dataset: CocoDetection, dets: Detections, count: int = GRID_IMAGES):
    """``(predictions, ground_truth)`` lists of ``run_plots.ImageBoxes`` for the first
    ``count`` validation images, original pixels, boxes xyxy, COCO category ids."""
    from sparse_rcnn.dashboards.run_plots import ImageBoxes

    preds, gts = [], []
    for record in dataset.records[:count]:
        image = load_image(record.path).permute(1, 2, 0).numpy()  # (H, W, 3) uint8
        mine = dets.image_id == record.image_id
        boxes = xywh_to_xyxy(torch.from_numpy(dets.bbox[mine])).numpy()
        preds.append(ImageBoxes(image, boxes, dets.category_id[mine], dets.score[mine]))
        cats = np.array([dataset.category_map.category_id(int(c)) for c in record.labels])
        gts.append(ImageBoxes(image, record.boxes, cats.astype(np.int64)))
    return preds, gts


def class_names(dataset: CocoDetection) -> dict[int, str]:
    cm = dataset.category_map
    return dict(zip(cm.category_ids, cm.names, strict=True))


def log_evaluation_pictures(
    logger: object,
    dataset: CocoDetection,
    result: CocoEvalResult,
    dets: Detections,
    epoch: int,
    last: bool,
) -> None:
    """Draw and log the pictures of one evaluation (see the module doc); no-op for a logger
    without :class:`PictureLogger`."""
    if not isinstance(logger, PictureLogger):
        return
    from sparse_rcnn.dashboards import run_plots
    from sparse_rcnn.dashboards.figures import figure_array, png_bytes

    names_ = class_names(dataset)
    preds, gts = image_boxes(dataset, dets)
    grid = run_plots.detection_grid(
        preds, gts, names_, SCORE_THRESHOLD, title=f"epoch {epoch}: predicted | ground truth"
    )
    logger.log_image(figure_array(grid), names.IMAGE_DETECTIONS, epoch)
    if not last:
        return
    _, acc = prepare(dataset.ann_file, dets, result.max_dets)
    curves = [precision_recall(acc, iou) for iou in PR_IOUS]
    folder = names.ARTIFACT_EVAL_FIGURES_DIR
    title = f"epoch {epoch}"
    logger.log_png(png_bytes(run_plots.pr_curves(curves, names_, title)),
                   f"{folder}/pr_curves.png")  # fmt: skip
    logger.log_png(
        png_bytes(run_plots.per_category_ap(result.per_category_ap, names_,
                                            f"AP per category, epoch {epoch}")),
        f"{folder}/ap_per_category.png",
    )  # fmt: skip

"""Per-category precision-recall curves, as pycocotools' ``COCOeval.eval["precision"]``.

For one IoU threshold, area range "all" and maxDets 100 (the curves whose mean is AP), each
category's detections are taken in accumulation order (:class:`~.matching.Matches`: score
descending, ties by image id); ignored ones are skipped; with ``tp``/``fp`` their running
counts and ``npig`` the category's non-ignored ground truth:

    recall = tp / npig,   precision = tp / (tp + fp + eps),

precision is made non-increasing from the right (the interpolated envelope) and read at the 101
recall thresholds (the first position where ``recall >= r``; 0 where recall never gets there).
The mean over thresholds of a row at IoU 0.50 is that category's AP50 contribution. This is
the plain evaluation (every image once); the bootstrap has no use for curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparse_rcnn.platform.evaluation.accumulate import RECALL_THRESHOLDS
from sparse_rcnn.platform.evaluation.coco_eval import CocoAccumulator
from sparse_rcnn.platform.evaluation.matching import (
    FALSE_POSITIVE,
    IGNORED,
    IOU_THRESHOLDS,
    TRUE_POSITIVE,
)

AP_MAX_DETS = 100  # pycocotools reads AP's curves at maxDets=100 whatever maxDets lists


@dataclass(frozen=True)
class PrecisionRecall:
    """Curves of every category at one IoU threshold.

    Attributes:
        iou: the IoU threshold (one of ``IOU_THRESHOLDS``).
        recall: (101,) recall thresholds 0, 0.01, ..., 1.
        precision: (K, 101) interpolated precision at each recall threshold; NaN rows for
            categories without non-crowd ground truth (pycocotools' -1).
        category_ids: (K,) COCO category id of each row.
        num_gt: (K,) non-ignored ground truth per category.
    """

    iou: float
    recall: np.ndarray
    precision: np.ndarray
    category_ids: np.ndarray
    num_gt: np.ndarray


def precision_recall(acc: CocoAccumulator, iou: float) -> PrecisionRecall:
    """The curves of ``acc``'s matching at IoU threshold ``iou`` (area all, maxDets 100)."""
    hits = np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou))
    if hits.size != 1:
        raise ValueError(f"iou must be one of {IOU_THRESHOLDS.round(2).tolist()}, got {iou}")
    m = acc.matches
    k_all = len(m.category_ids)
    npig = m.num_gt.row_sums()[:k_all]  # area "all"
    status = m.status(0)[hits[0]]  # (D,)
    keep = (m.rank < AP_MAX_DETS) & (status != IGNORED)
    cat, st = m.category[keep], status[keep]
    out = np.full((k_all, len(RECALL_THRESHOLDS)), np.nan)
    starts = np.searchsorted(cat, np.arange(k_all + 1))
    for k in range(k_all):
        if npig[k] == 0:
            continue
        s = st[starts[k] : starts[k + 1]]
        if s.size == 0:
            out[k] = 0.0
            continue
        tp = np.cumsum(s == TRUE_POSITIVE)
        fp = np.cumsum(s == FALSE_POSITIVE)
        recall = tp / npig[k]
        precision = tp / (fp + tp + np.spacing(1))
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        idx = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
        out[k] = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return PrecisionRecall(float(IOU_THRESHOLDS[hits[0]]), RECALL_THRESHOLDS.copy(), out,
                           np.asarray(m.category_ids), npig)  # fmt: skip

"""Precision-recall curves against pycocotools' ``eval["precision"]``, the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_rcnn.platform.evaluation.coco_eval import MMDET_MAX_DETS, prepare
from sparse_rcnn.platform.evaluation.detections import Detections
from sparse_rcnn.platform.evaluation.matching import IOU_THRESHOLDS
from sparse_rcnn.platform.evaluation.pr_curves import precision_recall


@pytest.mark.parametrize(("seed", "ties"), [(8, False), (4, True)])
@pytest.mark.parametrize("iou", [0.5, 0.75])
def test_curves_equal_pycocotools_precision(make_case, pycoco_evaluator, seed, ties, iou):
    gt, dets = make_case(seed, tie_scores=ties)
    ev = pycoco_evaluator(gt, dets)
    t = int(np.flatnonzero(np.isclose(IOU_THRESHOLDS, iou))[0])
    expected = ev.eval["precision"][t, :, :, 0, 2].T  # (K, R) area all, maxDets 100
    expected = np.where(expected == -1, np.nan, expected)
    _, acc = prepare(gt, Detections.from_coco_results(dets))
    pr = precision_recall(acc, iou)
    assert pr.category_ids.tolist() == ev.params.catIds
    np.testing.assert_allclose(pr.precision, expected, rtol=0, atol=1e-12)
    assert np.isnan(pr.precision[pr.num_gt == 0]).all()


def test_curves_use_max_dets_100_under_mmdet_max_dets(make_case, pycoco_evaluator):
    gt, dets = make_case(8)
    ev = pycoco_evaluator(gt, dets, MMDET_MAX_DETS)
    expected = ev.eval["precision"][0, :, :, 0, 0].T  # maxDets index 0 = 100
    _, acc = prepare(gt, Detections.from_coco_results(dets), MMDET_MAX_DETS)
    got = precision_recall(acc, 0.5).precision
    np.testing.assert_allclose(got, np.where(expected == -1, np.nan, expected), atol=1e-12)


def test_no_detections_give_zero_precision_and_bad_iou_is_refused(coco_case):
    gt, _ = coco_case
    _, acc = prepare(gt, Detections.from_coco_results([]))
    pr = precision_recall(acc, 0.5)
    assert np.all(pr.precision[pr.num_gt > 0] == 0)
    with pytest.raises(ValueError, match="iou must be one of"):
        precision_recall(acc, 0.52)

"""evaluate() against pycocotools COCOeval(bbox), the oracle, on every edge case it lists."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_rcnn.platform.evaluation.accumulate import RECALL_THRESHOLDS, recall_count_table
from sparse_rcnn.platform.evaluation.coco_eval import MMDET_MAX_DETS, evaluate, metric_names
from sparse_rcnn.platform.evaluation.detections import Detections
from sparse_rcnn.platform.evaluation.matching import pair_iou

TOL = 1e-9


def _dets(results: list[dict]) -> Detections:
    return Detections.from_coco_results(results)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_stats_equal_pycocotools(make_case, pycoco, seed):
    gt, dets = make_case(seed)
    got = evaluate(gt, _dets(dets)).stats_array()
    np.testing.assert_allclose(got, pycoco(gt, dets), rtol=0, atol=TOL)


@pytest.mark.parametrize("seed", [4, 5])
def test_tied_scores_equal_pycocotools(make_case, pycoco, seed):
    gt, dets = make_case(seed, tie_scores=True)
    assert len({d["score"] for d in dets}) <= 11  # scores really tie
    got = evaluate(gt, _dets(dets)).stats_array()
    np.testing.assert_allclose(got, pycoco(gt, dets), rtol=0, atol=TOL)


def test_all_scores_equal(make_case, pycoco):
    gt, dets = make_case(6)
    for d in dets:
        d["score"] = 0.5
    got = evaluate(gt, _dets(dets)).stats_array()
    np.testing.assert_allclose(got, pycoco(gt, dets), rtol=0, atol=TOL)


def test_mmdet_max_dets_equal_pycocotools(make_case, pycoco):
    gt, dets = make_case(7, crowded_group=400)  # one (image, category) above 300 and 100
    res = evaluate(gt, _dets(dets), max_dets=MMDET_MAX_DETS)
    np.testing.assert_allclose(
        res.stats_array(), pycoco(gt, dets, MMDET_MAX_DETS), rtol=0, atol=TOL
    )
    assert list(res.stats)[6:9] == ["AR100", "AR300", "AR1000"]
    # pycocotools' stats[0] uses maxDets=100 even here, AP50 uses 1000: they differ.
    default = evaluate(gt, _dets(dets))
    assert res.stats["AP"] == pytest.approx(default.stats["AP"], abs=TOL)


def test_per_category_ap_equals_pycocotools_precision(make_case, pycoco_evaluator):
    gt, dets = make_case(8)
    ev = pycoco_evaluator(gt, dets)
    precision = ev.eval["precision"][:, :, :, 0, 2]  # (T, R, K) area all, maxDets 100
    res = evaluate(gt, _dets(dets))
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k]
        expected = np.nan if (p == -1).all() else p.mean()
        np.testing.assert_allclose(res.per_category_ap[cat], expected, rtol=0, atol=TOL)
    assert np.isnan(res.per_category_ap[20])  # listed, no ground truth
    assert np.nanmean(list(res.per_category_ap.values())) == pytest.approx(res.stats["AP"], abs=TOL)


def test_larger_case_equals_pycocotools(make_case, pycoco):
    gt, dets = make_case(9, n_images=250, crowd_rate=0.03)
    got = evaluate(gt, _dets(dets)).stats_array()
    np.testing.assert_allclose(got, pycoco(gt, dets), rtol=0, atol=TOL)


def test_only_crowd_ground_truth_gives_minus_one(pycoco):
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100,
             "iscrowd": 1},
        ],
    }  # fmt: skip
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]
    got = evaluate(gt, _dets(dets)).stats_array()
    np.testing.assert_array_equal(got, pycoco(gt, dets))
    assert (got == -1).all()


def test_no_detections_scores_zero():
    gt = {
        "images": [{"id": 1}],
        "categories": [{"id": 1}, {"id": 2}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50],
                         "area": 2500, "iscrowd": 0}],
    }  # fmt: skip
    res = evaluate(gt, Detections.empty())
    assert res.stats["AP"] == 0.0 and res.stats["AR100"] == 0.0 and res.stats["APl"] == -1.0
    assert res.stats["APm"] == 0.0  # the one box is medium-sized
    assert np.isnan(res.per_category_ap[2])


def test_degenerate_ground_truth_gives_minus_one():
    one = Detections([1], [1], [0.5], [[0, 0, 10, 10]])
    no_images = {"images": [], "annotations": [], "categories": [{"id": 1}]}
    assert (evaluate(no_images, Detections.empty()).stats_array() == -1).all()
    no_categories = {"images": [{"id": 1}], "annotations": [], "categories": []}
    res = evaluate(no_categories, one)
    assert (res.stats_array() == -1).all() and res.num_detections_ignored == 1
    no_boxes = {"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}
    assert (evaluate(no_boxes, one).stats_array() == -1).all()


def test_unlisted_category_detections_are_ignored(coco_case):
    gt, dets = coco_case
    res = evaluate(gt, _dets(dets))
    assert res.num_detections_ignored == sum(d["category_id"] == 99 for d in dets) > 0
    kept = [d for d in dets if d["category_id"] != 99]
    np.testing.assert_array_equal(evaluate(gt, _dets(kept)).stats_array(), res.stats_array())


def test_bad_input_raises_clear_errors(coco_case):
    gt, dets = coco_case
    bad = _dets(dets[:3] + [{**dets[0], "image_id": 123456}])
    with pytest.raises(ValueError, match="123456"):
        evaluate(gt, bad)
    nan = _dets([{**dets[0], "score": float("nan")}])
    with pytest.raises(ValueError, match="non-finite score"):
        evaluate(gt, nan)
    with pytest.raises(ValueError, match="contain 100"):
        evaluate(gt, _dets(dets), max_dets=(1, 10, 50))
    dup = {**gt, "annotations": gt["annotations"] + [gt["annotations"][0]]}
    with pytest.raises(ValueError, match="duplicate annotation id"):
        evaluate(dup, _dets(dets))
    zero = {**gt, "annotations": [{**gt["annotations"][0], "id": 0}]}
    with pytest.raises(ValueError, match="id 0"):
        evaluate(zero, _dets(dets))
    orphan = {**gt, "annotations": [{**gt["annotations"][0], "image_id": 999999}]}
    with pytest.raises(ValueError, match="999999"):
        evaluate(orphan, _dets(dets))
    with pytest.raises(ValueError, match="'images'"):
        evaluate({"annotations": [], "categories": []}, _dets(dets))


def test_metric_names_follow_max_dets():
    assert metric_names()[6:9] == ("AR1", "AR10", "AR100")
    assert metric_names(MMDET_MAX_DETS)[6:9] == ("AR100", "AR300", "AR1000")


def test_recall_count_table_is_exact_searchsorted():
    npig = np.array([[0, 1, 2, 3, 7], [100, 29, 57, 300, 1234]])
    table, start = recall_count_table(npig)
    for g, s in zip(npig.ravel(), start.ravel(), strict=True):
        c = np.arange(g + 1, dtype=np.float64)
        expected = np.searchsorted(RECALL_THRESHOLDS, c / max(g, 1), side="right")
        expected = expected if g else np.array([101])
        np.testing.assert_array_equal(table[s : s + g + 1], expected)
    many = np.arange(1, 3000)[None, :]  # every npig below 3000
    table, start = recall_count_table(many)
    c = np.arange(3000)[None, :]
    ok = c <= many.T  # (npig, c) pairs
    x = np.broadcast_to(c, ok.shape)[ok] / np.broadcast_to(many.T, ok.shape)[ok]
    got = table[(start.T + c)[ok]]
    np.testing.assert_array_equal(got, np.searchsorted(RECALL_THRESHOLDS, x, side="right"))


def test_pair_iou_matches_pycocotools_mask_iou():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    dt = np.c_[rng.uniform(0, 50, (200, 2)), rng.uniform(0, 40, (200, 2))]
    gt = np.c_[rng.uniform(0, 50, (7, 2)), rng.uniform(0, 40, (7, 2))]
    crowd = np.array([0, 1, 0, 0, 1, 0, 0], np.uint8)
    ref = mask_utils.iou(dt.tolist(), gt.tolist(), crowd.tolist())  # (200, 7)
    pairs = pair_iou(np.repeat(dt, 7, axis=0), np.tile(gt, (200, 1)), np.tile(crowd, 200) > 0)
    np.testing.assert_array_equal(pairs.reshape(200, 7), ref)


def test_hand_made_corner_cases_equal_pycocotools(pycoco):
    """Equal IoUs (duplicate ground truth), IoU exactly 0.5 / 0.75, crowd absorbing several
    detections and overlapping a regular box, border areas, zero-area and huge detections."""

    def ann(i, img, box, area, crowd=0, cat=1):
        return {"id": i, "image_id": img, "category_id": cat, "bbox": box, "area": area,
                "iscrowd": crowd}  # fmt: skip

    anns = [
        ann(1, 1, [10, 10, 40, 40], 500.0),  # duplicates: small vs medium by area field
        ann(2, 1, [10, 10, 40, 40], 5000.0),
        ann(3, 1, [100, 100, 20, 20], 1024.0),  # exactly on the small/medium border
        ann(4, 2, [0, 0, 100, 100], 10000.0, crowd=1),
        ann(5, 2, [10, 10, 50, 50], 2500.0),
        ann(6, 3, [0, 0, 10, 10], 100.0),
        ann(7, 3, [50, 50, 96, 96], 9216.0, cat=2),
        ann(8, 3, [200, 200, 10, 10], 100.0, cat=2),
    ]
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.7},
        {"image_id": 1, "category_id": 1, "bbox": [100, 100, 20, 10], "score": 0.6},  # IoU .5
        {"image_id": 2, "category_id": 1, "bbox": [12, 12, 50, 50], "score": 0.95},
        {"image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.85},  # in crowd
        {"image_id": 2, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.75},  # in crowd
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.65},
        {"image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 7.5], "score": 0.5},  # IoU .75
        {"image_id": 3, "category_id": 1, "bbox": [0, 0, 0, 0], "score": 0.45},
        {"image_id": 3, "category_id": 2, "bbox": [50, 50, 96, 96], "score": 0.4},
        {"image_id": 3, "category_id": 2, "bbox": [0, 0, 1000, 1000], "score": 0.3},
        {"image_id": 3, "category_id": 2, "bbox": [200, 200, 10, 10], "score": 0.3},
    ]
    gt = {"images": [{"id": i} for i in (1, 2, 3, 4)], "annotations": anns,
          "categories": [{"id": 1}, {"id": 2}]}  # fmt: skip
    got = evaluate(gt, _dets(dets)).stats_array()
    np.testing.assert_allclose(got, pycoco(gt, dets), rtol=0, atol=TOL)

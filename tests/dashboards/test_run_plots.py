"""Run plots on a small hand-made evaluation: boxes drawn, bars and curves where the numbers
say."""

from __future__ import annotations

import numpy as np
import pytest

from sparse_rcnn.dashboards import run_plots
from sparse_rcnn.dashboards.figures import png_bytes
from sparse_rcnn.platform.evaluation.coco_eval import prepare, summarize
from sparse_rcnn.platform.evaluation.detections import Detections
from sparse_rcnn.platform.evaluation.pr_curves import precision_recall

NAMES = {1: "person", 2: "bicycle", 3: "car"}


def _case() -> tuple[dict, Detections]:
    """3 images; category 3 listed without ground truth; some detections hit, some miss."""
    rng = np.random.default_rng(0)
    images, anns, dets = [], [], []
    for i in range(1, 4):
        images.append({"id": i, "width": 64, "height": 48, "file_name": f"{i}.png"})
        for j in range(3):
            x, y = rng.uniform(0, 30, 2)
            cat = 1 + (i + j) % 2
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat,
                         "bbox": [x, y, 20, 15], "area": 300.0, "iscrowd": 0})  # fmt: skip
            jitter = rng.normal(0, 3 if j else 0.5, 2)
            dets.append({"image_id": i, "category_id": cat, "score": float(rng.uniform(0.2, 1)),
                         "bbox": [x + jitter[0], y + jitter[1], 20, 15]})  # fmt: skip
        dets.append({"image_id": i, "category_id": 2, "score": 0.1, "bbox": [1, 1, 5, 5]})
    cats = [{"id": c, "name": n} for c, n in NAMES.items()]
    return {
        "images": images,
        "annotations": anns,
        "categories": cats,
    }, Detections.from_coco_results(dets)


def test_pr_curves_mean_averages_to_ap50_and_ap75():
    gt, dets = _case()
    _, acc = prepare(gt, dets)
    result = summarize(acc)
    curves = [precision_recall(acc, 0.5), precision_recall(acc, 0.75)]
    fig = run_plots.pr_curves(curves, NAMES)
    for ax, key in zip(fig.axes, ("AP50", "AP75"), strict=True):
        lines = [ln for ln in ax.lines if ln.get_gid() == "category"]
        assert len(lines) == 2  # category 3 has no ground truth: no curve
        (mean,) = [ln for ln in ax.lines if ln.get_gid() == "mean"]
        assert np.mean(mean.get_ydata()) == pytest.approx(result.stats[key], abs=1e-12)
        assert f"{100 * result.stats[key]:.2f}" in ax.get_title()
    assert png_bytes(fig)[:4] == b"\x89PNG"


def test_per_category_ap_bars_in_points_without_missing_categories():
    ap = {1: 0.42, 2: 0.1, 3: float("nan")}
    fig = run_plots.per_category_ap(ap, NAMES)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_gid() == "ap"]
    assert [b.get_width() for b in bars] == pytest.approx([42.0, 10.0])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["person", "bicycle"]
    assert "1 without ground truth" in ax.get_title()
    (mean,) = [ln for ln in ax.lines if ln.get_gid() == "mean"]
    assert mean.get_xdata()[0] == pytest.approx(26.0)


def test_detection_grid_draws_predictions_over_threshold_beside_ground_truth():
    img = np.zeros((48, 64, 3), np.uint8)
    pred = run_plots.ImageBoxes(img, np.array([[1, 2, 20, 30], [5, 5, 9, 9], [0, 0, 4, 4.0]]),
                                np.array([1, 2, 3]), np.array([0.9, 0.5, 0.2]))  # fmt: skip
    gt = run_plots.ImageBoxes(img, np.array([[1, 2, 21, 31.0]]), np.array([1]))
    empty = run_plots.ImageBoxes(img, np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))
    fig = run_plots.detection_grid([pred, empty], [gt, gt], NAMES, score_threshold=0.3)
    assert len(fig.axes) == 4
    p_ax, g_ax = fig.axes[0], fig.axes[1]
    rects = [p for p in p_ax.patches if p.get_gid() == "pred"]
    assert len(rects) == 2  # the 0.2 box is under the threshold
    assert (rects[0].get_x(), rects[0].get_y(), rects[0].get_width(), rects[0].get_height()) == (
        1, 2, 19, 28,
    )  # fmt: skip
    assert [t.get_text() for t in p_ax.texts] == ["person 0.90", "bicycle 0.50"]
    assert [t.get_text() for t in g_ax.texts] == ["person"]
    assert len([p for p in fig.axes[2].patches if p.get_gid() == "pred"]) == 0
    assert png_bytes(fig)[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="gt images"):
        run_plots.detection_grid([pred], [], NAMES)

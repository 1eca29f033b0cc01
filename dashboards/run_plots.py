"""Plots of one training run's evaluation: validation images with predicted boxes beside the
ground truth, AP per category, and precision-recall curves.

Boxes are absolute-pixel ``xyxy`` in the original image's frame (the ground truth's and the
detections' frame); categories are COCO category ids, named through ``class_names``. AP values
come in COCO fractions (``CocoEvalResult.per_category_ap``) and are drawn in AP points (x 100).
Every function returns a new Figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from sparse_rcnn.dashboards.figures import DPI, empty_figure, new_figure, style_axes
from sparse_rcnn.platform.evaluation.pr_curves import PrecisionRecall

POINTS = 100.0  # COCO fraction -> AP points
PRED_COLOUR, GT_COLOUR = "#ff7f0e", "#2ca02c"


@dataclass(frozen=True)
class ImageBoxes:
    """One validation image with its boxes.

    Attributes:
        image: (H, W, 3) uint8 RGB, original size.
        boxes: (M, 4) float absolute-pixel xyxy in the image's frame.
        category_ids: (M,) int COCO category ids.
        scores: (M,) float confidences; None for ground truth.
    """

    image: np.ndarray
    boxes: np.ndarray
    category_ids: np.ndarray
    scores: np.ndarray | None = None


def detection_grid(
    predictions: Sequence[ImageBoxes],
    ground_truth: Sequence[ImageBoxes],
    class_names: Mapping[int, str],
    score_threshold: float = 0.3,
    title: str = "",
) -> Figure:
    """One row per image: predicted boxes with ``score >= score_threshold`` labelled
    ``name score`` (gid ``pred``) on the left, the ground truth labelled ``name`` (gid ``gt``)
    on the right."""
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} prediction images but {len(ground_truth)} gt images")
    if not predictions:
        return empty_figure(title or "Detections", "no validation images")
    n = len(predictions)
    fig = Figure(figsize=(7.0, 3.2 * n), dpi=DPI, layout="constrained")
    axes = fig.subplots(n, 2, squeeze=False)
    for row, (pred, gt) in enumerate(zip(predictions, ground_truth, strict=True)):
        keep = pred.scores >= score_threshold if pred.scores is not None else slice(None)
        _draw(
            axes[row, 0],
            pred.image,
            pred.boxes[keep],
            pred.category_ids[keep],
            None if pred.scores is None else pred.scores[keep],
            class_names,
            PRED_COLOUR,
            "pred",
        )
        _draw(axes[row, 1], gt.image, gt.boxes, gt.category_ids, None, class_names, GT_COLOUR,
              "gt")  # fmt: skip
        axes[row, 0].set_title(f"predicted (score >= {score_threshold:g}): {int(np.sum(keep))}"
                               if pred.scores is not None else "predicted", fontsize=9)  # fmt: skip
        axes[row, 1].set_title(f"ground truth: {len(gt.boxes)}", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def _draw(ax, image, boxes, cats, scores, names, col, gid) -> None:
    ax.imshow(image)
    ax.set_axis_off()
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=col,
                               linewidth=1.5, gid=gid))  # fmt: skip
        name = names.get(int(cats[i]), str(int(cats[i])))
        text = name if scores is None else f"{name} {scores[i]:.2f}"
        ax.text(x0, y0, text, fontsize=7, color="white", va="bottom", gid=gid,
                bbox={"facecolor": col, "alpha": 0.8, "pad": 1, "edgecolor": "none"})  # fmt: skip


def per_category_ap(
    ap: Mapping[int, float], class_names: Mapping[int, str], title: str = "AP per category"
) -> Figure:
    """Horizontal bars of AP (points) per category with ground truth (gid ``ap``), highest
    first; categories without ground truth (NaN) are counted in the title, not drawn."""
    have = sorted(((v, c) for c, v in ap.items() if np.isfinite(v)), reverse=True)
    missing = len(ap) - len(have)
    if not have:
        return empty_figure(title, "no category has ground truth")
    fig, ax = new_figure(7.0, 1.2 + 0.22 * len(have))
    names = [class_names.get(c, str(c)) for _, c in have]
    ys = np.arange(len(have))
    ax.barh(ys, [POINTS * v for v, _ in have], color="#1f77b4", gid="ap")
    ax.set_yticks(ys, names, fontsize=8 if len(have) < 40 else 6)
    ax.invert_yaxis()
    ax.set_xlabel("AP (points), IoU 0.50:0.95")
    mean = POINTS * float(np.mean([v for v, _ in have]))
    ax.axvline(mean, color="black", linestyle="--", linewidth=1, gid="mean",
               label=f"mean {mean:.2f} (= AP)")  # fmt: skip
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title + (f" ({missing} without ground truth not shown)" if missing else ""))
    return fig


def pr_curves(
    curves: Sequence[PrecisionRecall], class_names: Mapping[int, str], title: str = ""
) -> Figure:
    """One panel per IoU threshold: each category's interpolated precision-recall curve (thin,
    gid ``category``) and their mean over categories with ground truth (gid ``mean``; its
    average over recall is the AP at that IoU, printed in the panel title)."""
    if not curves:
        return empty_figure(title or "Precision-recall", "no curves")
    fig = Figure(figsize=(4.0 * len(curves) + 0.5, 4.0), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, pr in zip(axes, curves, strict=True):
        style_axes(ax)
        rows = np.flatnonzero(np.isfinite(pr.precision).all(axis=1))
        for k in rows:
            ax.plot(pr.recall, pr.precision[k], color="#7f7f7f", alpha=0.35, linewidth=0.8,
                    gid="category")  # fmt: skip
        if rows.size:
            mean = pr.precision[rows].mean(axis=0)
            ax.plot(pr.recall, mean, color="#d62728", linewidth=2.2, gid="mean",
                    label="mean over categories")  # fmt: skip
            ap = POINTS * mean.mean()
            ax.set_title(f"IoU {pr.iou:.2f}: AP{round(100 * pr.iou)} {ap:.2f}", fontsize=10)
            best = rows[np.argmax(pr.precision[rows].mean(axis=1))]
            ax.legend(loc="upper right", fontsize=8,
                      title=f"{rows.size} categories; best: "
                            f"{class_names.get(int(pr.category_ids[best]), '?')}",
                      title_fontsize=8)  # fmt: skip
        else:
            ax.set_title(f"IoU {pr.iou:.2f}: no ground truth", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
    if title:
        fig.suptitle(title)
    return fig
